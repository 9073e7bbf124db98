"""The subscriber's container holds what the subscriber imports: its files as the Dockerfile
copies them, and nothing else of the repository, import the whole subscriber."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "functions" / "subscriber" / "Dockerfile"


def _copy_as_the_image_does(app: Path) -> None:
    """Replay the Dockerfile's ``COPY <sources...> <dest>`` lines into ``app`` (its /app)."""
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, dest = line.split()[1:]
        target = app / dest.removeprefix("/app/")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def test_the_image_holds_every_module_the_subscriber_imports(tmp_path):
    _copy_as_the_image_does(tmp_path)
    # run from the image's /app: its coda_memory package comes first on the path, so a module of
    # the service it does not hold cannot be found elsewhere
    code = ("import coda_memory, functions.subscriber.__main__, functions.subscriber.consumer; "
            f"assert coda_memory.__file__.startswith({str(tmp_path)!r}), coda_memory.__file__")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
