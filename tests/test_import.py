"""`import rag_routing` stays light: no framework or heavy library is imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["langchain_core", "llama_index", "torch", "faiss", "sentence_transformers", "transformers", "redis",
         "fastapi", "matplotlib"]


def test_import_is_light():
    code = (
        "import sys, json, rag_routing, rag_routing.decision, rag_routing.routers.base, rag_routing.ledger; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_every_public_name_resolves():
    import rag_routing

    missing = [name for name in rag_routing.__all__ if getattr(rag_routing, name, None) is None]
    assert missing == []
