"""Every module's docstring example runs and prints what it shows (the house rule: a runnable example atop
every module). Examples that need a model download or a server say ``# doctest: +SKIP`` in the docstring;
a module whose optional extra is not installed is skipped with the missing package named."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rag_routing


#: Examples that load the local generator model (~20 s): run with the slow tests (CI runs both).
LOADS_A_MODEL = {"rag_routing.integrations.langchain.chat_model"}


def _modules() -> list[object]:
    names = [rag_routing.__name__]
    for info in pkgutil.walk_packages(rag_routing.__path__, prefix="rag_routing."):
        names.append(info.name)
    return [pytest.param(n, marks=pytest.mark.slow) if n in LOADS_A_MODEL else n for n in sorted(names)]


@pytest.mark.parametrize("name", _modules())
def test_module_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_ROUTING_CACHE", str(tmp_path / "cache"))  # examples never touch the user's cache
    monkeypatch.chdir(tmp_path)  # nor write into the checkout
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        pytest.skip(f"{name} needs an optional package that is not installed: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed (see above)"
