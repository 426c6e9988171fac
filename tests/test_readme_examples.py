"""Docs that cannot drift: every ```python block of README.md runs as written, each in a fresh interpreter.

A block is a complete program: it may not lean on names defined by an earlier block. Each runs in an empty
temporary folder (files it writes land there), offline, with the test session's embedding cache. Blocks load
real models (MiniLM, the local SmolLM2), so the whole module is marked slow; it runs in `make test` and CI.

Run one block: ``pytest tests/test_readme_examples.py -m slow -k "block_03"``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# A fenced block opens with ```python at the start of a line and closes with the next ``` line.
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of every ```python block in ``text``."""
    blocks = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, match.group(1)))
    return blocks


def test_block_parser_finds_blocks_and_their_lines() -> None:
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = 2\nprint(y)\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n"), (9, "y = 2\nprint(y)\n")]


def test_readme_has_python_examples() -> None:
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 5


_BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize(("line", "code"), _BLOCKS, ids=[f"block_{i:02d}_line_{ln}" for i, (ln, _) in enumerate(_BLOCKS)])
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path) -> None:
    compile(code, f"README.md:{line}", "exec")  # a syntax error names the block's line
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(README.parent))
    script = tmp_path / "readme_block.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (
        f"README.md block at line {line} failed (exit {proc.returncode}):\n--- code ---\n{code}\n"
        f"--- stderr (tail) ---\n{proc.stderr[-4000:]}"
    )
