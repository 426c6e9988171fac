"""`import rag_routing.retrieval` stays light: FAISS, torch and sentence-transformers load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["faiss", "torch", "sentence_transformers", "transformers", "rank_bm25", "scipy", "tiktoken"]


def test_import_retrieval_is_light():
    code = (
        "import sys, json, rag_routing.retrieval; from rag_routing.retrieval import *; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_bm25_runs_without_faiss_or_torch():
    code = (
        "import sys, json; from rag_routing.retrieval import BM25Retriever; "
        "BM25Retriever().add_documents(['a cat', 'a dog']).retrieve('cat'); "
        "print(json.dumps([m for m in ['faiss', 'torch', 'sentence_transformers'] if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
