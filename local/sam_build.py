"""`make build`: ``sam build`` without a container into ``.aws-sam/build``.

The python3.12 builder of SAM CLI needs a ``python3.12`` on PATH (the functions are built for
that runtime; onnxruntime only ships manylinux_2_28 wheels, which the 3.11 builder refuses). This
script finds one -- PATH, ``pyenv``, common install locations -- and puts its directory first on
PATH for the build. Without one it says how to get it and exits 2.

    python -m local.sam_build [extra sam build args...]
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "infra" / "template.yaml"
BUILD_DIR = REPO_ROOT / ".aws-sam" / "build"
LAMBDA_UNZIPPED_LIMIT_MB = 250


def _python_version(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def find_python312() -> str | None:
    """Path of a working python3.12, or None."""
    candidates: list[str] = []
    on_path = shutil.which("python3.12")
    if on_path:
        candidates.append(on_path)
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            prefix = subprocess.run(
                [pyenv, "prefix", "3.12"], capture_output=True, text=True, timeout=20, check=False
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            prefix = ""
        for line in prefix.splitlines():
            candidates.append(str(Path(line) / "bin" / "python3.12"))
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv"]
    for root in filter(None, roots):
        candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"), reverse=True)
    candidates += ["/usr/local/bin/python3.12", "/usr/bin/python3.12", "/opt/homebrew/bin/python3.12"]
    seen: set[str] = set()
    for exe in candidates:
        if exe in seen or not os.access(exe, os.X_OK):
            continue
        seen.add(exe)
        if _python_version(exe) == "3.12":
            return exe
    return None


def _size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def sam_executable() -> str:
    local = Path(sys.executable).with_name("sam")
    if local.exists():
        return str(local)
    found = shutil.which("sam")
    if not found:
        raise SystemExit("sam (aws-sam-cli) not found: `make venv` installs it into .venv")
    return found


def main(argv: list[str]) -> int:
    py312 = find_python312()
    if not py312:
        print(
            "make build needs python3.12 (the Lambda runtime of the functions) and none was found.\n"
            "Install it (pyenv install 3.12, apt install python3.12, brew install python@3.12, or\n"
            "python.org) so that `python3.12` is on PATH, then run `make build` again.\n"
            "(`make run` and `make test` do not need it.)",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(py312).parent), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHON"] = py312  # used by the layer Makefiles for pip
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    cmd = [
        sam_executable(), "build",
        "--template-file", str(TEMPLATE),
        "--build-dir", str(BUILD_DIR),
        "--parallel",
        *argv,
    ]
    print(f"[build] python3.12: {py312}", flush=True)
    print(f"[build] {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=False).returncode
    elapsed = time.monotonic() - t0
    if rc != 0:
        print(f"[build] sam build failed (exit {rc}) after {elapsed:.1f}s", file=sys.stderr)
        return rc
    layers = {name: _size_mb(BUILD_DIR / name) for name in ("SharedLayer", "ModelLayer")}
    for name, mb in layers.items():
        print(f"[build] {name}: {mb:.0f} MB unzipped")
    total = sum(layers.values())
    status = "ok" if total < LAMBDA_UNZIPPED_LIMIT_MB else "OVER THE LIMIT"
    print(f"[build] layers together: {total:.0f} MB of Lambda's {LAMBDA_UNZIPPED_LIMIT_MB} MB ({status})")
    print(f"[build] done in {elapsed:.1f}s -> {BUILD_DIR.relative_to(REPO_ROOT)}")
    return 0 if total < LAMBDA_UNZIPPED_LIMIT_MB else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
