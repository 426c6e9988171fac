"""The package a user installs works: build the wheel, install it into a fresh virtualenv, run the defaults.

A wheel that lacked ``rag_routing/data/demo_corpus.jsonl`` once made ``RoutedRAG.default()`` and ``rag-routing
demo`` fail when installed from it, while the editable checkout worked. This test builds the wheel from the
repository, installs it (``--no-deps``) into a new virtualenv in a temporary folder, and runs both from a folder
outside the repository, so the checkout cannot be imported by accident. The wheel's dependencies (torch,
sentence-transformers, ...) come from the project's environment through a path file, because installing them
again is gigabytes; only ``rag_routing`` itself comes from the wheel, which the test checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED_FILES = ["rag_routing/data/demo_corpus.jsonl", "rag_routing/data/prices.json",
                  "rag_routing/data/candidate_descriptions.json", "rag_routing/py.typed"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
         cwd=out, env=env)
    wheels = sorted(out.glob("rag_routing-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, found {wheels}"
    return wheels[0]


@pytest.mark.slow
def test_wheel_contains_package_data(built_wheel: Path) -> None:
    names = set(zipfile.ZipFile(built_wheel).namelist())
    missing = [name for name in REQUIRED_FILES if name not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


@pytest.mark.slow
def test_wheel_installs_and_runs_the_defaults(built_wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=dict(os.environ)).stdout.strip())
    # Dependencies from the project's environment; a bare path line does not run that folder's own .pth files,
    # so the project's editable install of rag_routing stays invisible.
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               RAG_ROUTING_CACHE=str(tmp_path / "cache"))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(built_wheel)], cwd=tmp_path, env=env)
    work = tmp_path / "user"
    work.mkdir()
    where = _run([str(python), "-c", "import rag_routing; print(rag_routing.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), f"rag_routing imported from {where.stdout.strip()}"
    script = ("from rag_routing.stages import RoutedRAG\n"
              "state = RoutedRAG.default().invoke('Who designed the bridge in the capital of Freedonia?')\n"
              "assert state.answer.strip(), 'empty answer'\n"
              "print('ANSWER', state.answer)\n")
    assert "ANSWER" in _run([str(python), "-c", script], cwd=work, env=env).stdout
    demo = _run([str(env_dir / "bin" / "rag-routing"), "demo"], cwd=work, env=env)
    assert "ledger" in demo.stdout.lower()
