"""ledger.ambient_hooks: framework installers run once, only for frameworks already imported, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import ambient_hooks, ledger_scope


def test_an_installer_runs_once_when_its_module_is_imported() -> None:
    calls: list[str] = []
    ambient_hooks.register_ambient_hook("rag_routing_test_absent_module", lambda: calls.append("absent"))
    ambient_hooks.register_ambient_hook("json", lambda: calls.append("json"))
    with ledger_scope():
        pass
    with ledger_scope():
        pass
    assert calls == ["json"] and ambient_hooks.is_installed("json")
    assert not ambient_hooks.is_installed("rag_routing_test_absent_module")


def test_a_failing_installer_raises_and_is_tried_again() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("broken install")

    ambient_hooks.register_ambient_hook("csv", flaky)
    with pytest.raises(RuntimeError, match="broken install"):
        ambient_hooks.activate()
    ambient_hooks.activate()
    assert len(attempts) == 2 and ambient_hooks.is_installed("csv")


def test_bad_registrations_are_typed_errors() -> None:
    with pytest.raises(InvalidInputError):
        ambient_hooks.register_ambient_hook("", lambda: None)
    with pytest.raises(InvalidInputError):
        ambient_hooks.register_ambient_hook("json", "not-a-path")


def test_ledger_scope_imports_no_framework_and_meters_one_already_imported() -> None:
    code = ("import sys; from rag_routing.ledger import ledger_scope\n"
            "with ledger_scope(): pass\n"
            "assert 'langchain_core' not in sys.modules, 'ledger_scope imported langchain'\n"
            "from langchain_core.language_models import GenericFakeChatModel\n"
            "from langchain_core.messages import AIMessage\n"
            "reply = AIMessage('x', usage_metadata={'input_tokens': 10, 'output_tokens': 5, 'total_tokens': 15},\n"
            "                  response_metadata={'model_name': 'gpt-4o-mini'})\n"
            "with ledger_scope() as ledger:\n"
            "    GenericFakeChatModel(messages=iter([reply])).invoke('hi')\n"
            "assert [(e.model, e.input_tokens) for e in ledger.entries] == [('gpt-4o-mini', 10)], ledger.entries\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
