"""The cookbooks stay runnable: each notebook under ``cookbooks/`` executes top to bottom offline (slow), and
none is committed with outputs or execution counts.

Notebooks run in a Jupyter kernel started from *this* interpreter (a kernelspec written to a temporary folder
whose argv is ``sys.executable -m ipykernel_launcher``), so a system-wide ``python3`` kernel can never stand in
for the project's ``.venv``; ``test_kernel_is_this_interpreter`` checks it. Each notebook runs in its own
folder (so its relative paths work as they do for a reader) with one deadline for the whole notebook. The runs
go in separate processes (``cookbook_runner.py``), up to ``COOKBOOK_WORKERS`` (default: the CPU count, at most
3) at a time: each kernel is single-threaded, so two cores run two notebooks in the time of one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cookbook_runner import KERNEL_NAME, execute

REPO = Path(__file__).resolve().parents[1]
COOKBOOKS = REPO / "cookbooks"
NOTEBOOKS = sorted(COOKBOOKS.glob("*.ipynb"))
#: Seconds for a whole notebook (each takes one to two minutes on an idle 2-core machine).
NOTEBOOK_DEADLINE = 480
RUNNER = Path(__file__).with_name("cookbook_runner.py")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


# -- committed as source ---------------------------------------------------------------------------------------
def test_there_are_seven_cookbooks() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_", "07_"]


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
               "rag_routing.integrations.langchain", "rag_routing.integrations.langgraph",
               "rag_routing.integrations.llamaindex")
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
    ran = execute(nb, kernel_dir, tmp_path, 120)  # from cookbook_runner
    assert _text(ran).strip() == sys.executable


#: Notebook runs at once (each kernel is one single-threaded process); COOKBOOK_WORKERS overrides.
WORKERS = int(os.environ.get("COOKBOOK_WORKERS", max(1, min(os.cpu_count() or 1, 3))))


def _selected_runs(session: pytest.Session, jobs: dict[str, Any]) -> list[str]:
    """The runs the selected tests need (``-k 07_`` runs one notebook, not all of them)."""
    wanted = set()
    for item in session.items:
        name = getattr(item, "originalname", item.name)
        if name == "test_cookbook_runs":
            wanted.add(item.callspec.id)
        elif name == "test_benchmark_cookbook_runs_without_shared_data":
            wanted.add("05-without-shared-data")
    return [run_id for run_id in jobs if run_id in wanted] or list(jobs)


@pytest.fixture(scope="module")
def cookbook_runs(request: pytest.FixtureRequest, kernel_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every selected cookbook run (each notebook, and notebook 5 without the shared data), ``WORKERS`` at a
    time, each in its own process: ``{run id: {"notebook", "returncode", "stderr", "stdout"}}``."""
    import nbformat

    out_dir = tmp_path_factory.mktemp("executed")
    missing = out_dir / "no-shared-data"
    jobs = {p.stem: (p, []) for p in NOTEBOOKS}
    fifth = next(p for p in NOTEBOOKS if p.name.startswith("05_"))
    jobs["05-without-shared-data"] = (fifth, [f"RAG_ROUTING_SHARED_DATA={missing}"])

    def run(run_id: str) -> dict[str, Any]:
        path, env = jobs[run_id]
        out = out_dir / f"{run_id}.ipynb"
        command = [sys.executable, str(RUNNER), str(path), str(kernel_dir), str(out),
                   "--deadline", str(NOTEBOOK_DEADLINE), *(f"--env={e}" for e in env)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=NOTEBOOK_DEADLINE + 120)
        ran = nbformat.read(out, as_version=4) if done.returncode == 0 and out.is_file() else None
        return {"notebook": ran, "returncode": done.returncode, "stderr": done.stderr, "stdout": done.stdout}

    selected = _selected_runs(request.session, jobs)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = dict(zip(selected, pool.map(run, selected)))
    for run_id, result in results.items():
        print(result["stdout"].strip() or f"{run_id}: failed")
    return results


def _executed(runs: dict[str, dict[str, Any]], run_id: str) -> Any:
    result = runs[run_id]
    assert result["returncode"] == 0, f"{run_id} failed:\n{result['stderr'][-4000:]}"
    return result["notebook"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cookbook_runs(path: Path, cookbook_runs: dict[str, dict[str, Any]]) -> None:
    ran = _executed(cookbook_runs, path.stem)
    errors = [o for o in _outputs(ran) if o.get("output_type") == "error"]
    assert not errors
    pictures = [o for o in _outputs(ran) if "image/png" in o.get("data", {})]
    assert pictures, f"{path.name} drew no figure"


@pytest.mark.slow
def test_benchmark_cookbook_runs_without_shared_data(cookbook_runs: dict[str, dict[str, Any]]) -> None:
    ran = _executed(cookbook_runs, "05-without-shared-data")
    text = _text(ran)
    assert "no shared data" in text and "local model" in text
    assert any("image/png" in o.get("data", {}) for o in _outputs(ran))
