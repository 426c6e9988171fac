"""The cookbooks stay runnable: each notebook under ``cookbooks/`` executes top to bottom offline (slow), and
none is committed with outputs or execution counts.

Notebooks run in a Jupyter kernel started from *this* interpreter (a kernelspec written to a temporary folder
whose argv is ``sys.executable -m ipykernel_launcher``), so a system-wide ``python3`` kernel can never stand in
for the project's ``.venv``; ``test_kernel_is_this_interpreter`` checks it. Each notebook runs in its own
folder (so its relative paths work as they do for a reader) with one deadline for the whole notebook.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
COOKBOOKS = REPO / "cookbooks"
NOTEBOOKS = sorted(COOKBOOKS.glob("*.ipynb"))
#: Seconds for a whole notebook (each takes one to two minutes on an idle 2-core machine).
NOTEBOOK_DEADLINE = 480
KERNEL_NAME = "rag-routing-test-venv"


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


# -- committed as source ---------------------------------------------------------------------------------------
def test_there_are_six_cookbooks() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["nbformat"] == 4
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    dirty = [i for i, c in enumerate(doc["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing "
                       "(jupyter nbconvert --clear-output --inplace, or 'Clear All Outputs')")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_explains_and_is_linked(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    first = doc["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")
    prose = sum(1 for c in doc["cells"] if c["cell_type"] == "markdown")
    assert prose >= 5, f"{path.name}: {prose} markdown cells; a cookbook explains why as well as how"
    assert f"({path.name})" in (COOKBOOKS / "README.md").read_text(encoding="utf-8")
    assert f"(cookbooks/{path.name})" in (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_uses_only_the_public_api(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    source = "\n".join("".join(c["source"]) for c in doc["cells"] if c["cell_type"] == "code")
    allowed = ("rag_routing", "rag_routing.stages", "rag_routing.stages.defaults", "rag_routing.ledger",
               "rag_routing.evaluation", "rag_routing.retrieval", "rag_routing.llms",
               "rag_routing.integrations.langchain", "rag_routing.integrations.llamaindex")
    imported = set(re.findall(r"^\s*(?:from|import)\s+(rag_routing[\w.]*)", source, flags=re.MULTILINE))
    assert imported, f"{path.name} does not use rag_routing"
    assert imported <= set(allowed), f"{path.name} imports internals: {sorted(imported - set(allowed))}"


# -- executed ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec that starts ipykernel with this very interpreter (the project's .venv under make test)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    folder = tmp_path_factory.mktemp("kernels")
    spec = folder / KERNEL_NAME
    spec.mkdir()
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rag-routing (test interpreter)", "language": "python"}), encoding="utf-8")
    return folder


def _kernel_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures into the outputs
    env.update(extra)
    return env


def execute(nb: Any, kernel_dir: Path, cwd: Path, deadline_s: float, **env: str) -> Any:
    """Run every cell of ``nb`` in a fresh kernel of this interpreter, in ``cwd``, within ``deadline_s``."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    deadline = time.monotonic() + deadline_s
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=manager, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(cwd)}},
                            timeout_func=lambda _cell: max(1, int(deadline - time.monotonic())),
                            shutdown_kernel="graceful")
    return client.execute(env=_kernel_env(**env))


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb: Any) -> str:
    parts = []
    for out in _outputs(nb):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_kernel_is_this_interpreter(kernel_dir: Path, tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    ran = execute(nb, kernel_dir, tmp_path, 120)
    assert _text(ran).strip() == sys.executable


def _run_cookbook(path: Path, kernel_dir: Path, **env: str) -> tuple[Any, float]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    ran = execute(nb, kernel_dir, path.parent, NOTEBOOK_DEADLINE, **env)
    seconds = time.monotonic() - started
    print(f"{path.name}: {seconds:.1f} s")
    return ran, seconds


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cookbook_runs(path: Path, kernel_dir: Path) -> None:
    ran, _ = _run_cookbook(path, kernel_dir)
    errors = [o for o in _outputs(ran) if o.get("output_type") == "error"]
    assert not errors
    pictures = [o for o in _outputs(ran) if "image/png" in o.get("data", {})]
    assert pictures, f"{path.name} drew no figure"


@pytest.mark.slow
def test_benchmark_cookbook_runs_without_shared_data(kernel_dir: Path, tmp_path: Path) -> None:
    path = next(p for p in NOTEBOOKS if p.name.startswith("05_"))
    ran, _ = _run_cookbook(path, kernel_dir, RAG_ROUTING_SHARED_DATA=str(tmp_path / "no-shared-data"))
    text = _text(ran)
    assert "no shared data" in text and "local model" in text
    assert any("image/png" in o.get("data", {}) for o in _outputs(ran))
