"""The ledger package as a whole: public names, light imports, runnable docstring examples."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys

import pytest

MODULES = ["__init__", "budget", "budget_stores", "energy", "entry", "guard", "ledger", "pricing", "reports",
           "scope", "stores", "tokens"]
PUBLIC = ["CostLedger", "LedgerEntry", "ledger_scope", "current_ledger", "Budget", "Reservation", "PriceTable",
          "estimate_cost", "count_tokens", "EnergyModel", "estimate_energy", "MemoryStore", "SQLiteStore",
          "LedgerThreadPoolExecutor"]


def test_public_names_are_exported():
    import rag_routing.ledger as ledger

    for name in PUBLIC:
        assert name in ledger.__all__ and getattr(ledger, name) is not None, name


def test_importing_the_ledger_stays_light():
    code = (
        "import sys, json, rag_routing.ledger as L; L.count_tokens('hi'); "
        "print(json.dumps(sorted(m for m in ('torch', 'langchain', 'langchain_core', 'llama_index', "
        "'llama_index.core', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    name = "rag_routing.ledger" if module == "__init__" else f"rag_routing.ledger.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
