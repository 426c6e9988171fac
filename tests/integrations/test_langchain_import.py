"""`import rag_routing.integrations` (and its two subpackages) imports neither LangChain nor LlamaIndex."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRAMEWORKS = ["langchain_core", "llama_index", "torch", "transformers"]


def loaded_after(code: str) -> list[str]:
    probe = f"import sys, json; {code}; print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_integrations_package_loads_no_framework() -> None:
    assert loaded_after("import rag_routing.integrations as i; dir(i); i.__all__") == []
    assert loaded_after("import rag_routing.integrations.langchain, rag_routing.integrations.llamaindex") == []


def test_a_name_loads_only_its_own_framework() -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    assert loaded_after("from rag_routing.integrations import StageRunnable") == ["langchain_core"]
    assert "langchain_core" not in loaded_after("from rag_routing.integrations import RoutingSelector")


def test_every_exported_name_resolves() -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    import rag_routing.integrations as integrations
    import rag_routing.integrations.langchain as lc
    import rag_routing.integrations.llamaindex as li

    for module in (integrations, lc, li):
        assert [n for n in module.__all__ if getattr(module, n, None) is None] == []
    with pytest.raises(AttributeError):
        integrations.NoSuchThing  # noqa: B018
