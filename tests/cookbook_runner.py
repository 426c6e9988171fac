"""Execute one cookbook in a Jupyter kernel of a given interpreter and save the executed notebook.

``tests/test_cookbooks.py`` starts one of these per notebook run, several at once (each kernel is a separate,
single-threaded process, so a 2-core machine runs two notebooks in the time of one). Usage::

    python tests/cookbook_runner.py NOTEBOOK KERNEL_DIR OUT.ipynb [--env NAME=VALUE ...] [--deadline S]

Exit status 0 and OUT.ipynb written when every cell ran; otherwise the failing cell's error on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

KERNEL_NAME = "rag-routing-test-venv"


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



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("kernel_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--deadline", type=float, default=480.0)
    args = parser.parse_args(argv)
    import nbformat

    nb = nbformat.read(args.notebook, as_version=4)
    started = time.monotonic()
    ran = execute(nb, args.kernel_dir, args.notebook.parent, args.deadline,
                  **dict(item.split("=", 1) for item in args.env))
    nbformat.write(ran, args.out)
    print(f"{args.notebook.name}: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
