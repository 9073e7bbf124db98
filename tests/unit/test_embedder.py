"""Tests of the run-time int8 ONNX embedder (src/coda_memory/embedder.py).

These need the built model (``make layer`` / ``python3 layers/model/build.py``): when it is
missing they FAIL rather than skip, so a broken build cannot pass silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coda_memory.embedder import (
    DIMENSION,
    MODEL_NAME,
    Embedder,
    ModelNotBuiltError,
    default_model_dir,
    load_embedder,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    try:
        return load_embedder()
    except ModelNotBuiltError as exc:  # fail, never skip
        pytest.fail(f"model not built: {exc}")


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    doc = json.loads((FIXTURES / "embedding_reference.json").read_text(encoding="utf-8"))
    emb = np.load(FIXTURES / "embedding_reference_fp32.npy")
    assert emb.shape == (len(doc["texts"]), DIMENSION)
    assert emb.dtype == np.float32
    return doc["texts"], emb


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))


# (a) quality gate ---------------------------------------------------------------------------


def test_int8_matches_fp32_reference(
    embedder: Embedder, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, ref = reference
    assert len(texts) >= 220
    got = embedder.embed(texts)
    cos = _cos(got, ref)
    worst = [(float(cos[i]), texts[i][:40]) for i in np.argsort(cos)[:3]]
    assert cos.mean() >= 0.99, f"mean cosine {cos.mean():.4f}; worst {worst}"
    assert cos.min() >= 0.95, f"min cosine {cos.min():.4f}; worst {worst}"


def test_manifest_describes_per_channel_int8(embedder: Embedder) -> None:
    m = embedder.manifest
    assert m["model_name"] == MODEL_NAME == embedder.model_name
    assert m["quantization"] == {"type": "dynamic", "weight_type": "QUInt8", "per_channel": True}
    assert embedder.quantization == "int8-dynamic-per-channel"
    assert m["dimension"] == DIMENSION == embedder.dimension
    assert m["max_seq_length"] == 256
    model = embedder.model_dir / "model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == m["model_sha256"]


# (b) no torch at run time -----------------------------------------------------------------


def test_import_does_not_pull_torch() -> None:
    code = (
        "import sys\n"
        "import coda_memory.embedder as e\n"
        "heavy = ('torch', 'transformers', 'optimum')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "e.load_embedder().embed_one('hello')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout


# (c) batch parity ---------------------------------------------------------------------------


def test_alone_equals_in_batch(embedder: Embedder, reference: tuple[list[str], np.ndarray]) -> None:
    texts = reference[0][:80]
    batch = embedder.embed(texts)
    alone = np.stack([embedder.embed_one(t) for t in texts])
    assert _cos(batch, alone).min() >= 0.9999
    # and in input order, whatever the order of the call
    rev = embedder.embed(texts[::-1])[::-1]
    assert _cos(rev, batch).min() >= 0.9999


# (d) truncation -----------------------------------------------------------------------------


def test_long_text_truncated_to_256_tokens(embedder: Embedder) -> None:
    from tokenizers import Tokenizer

    sentence = (
        "The committee reviewed the annual budget and approved new funding for the library, "
        "the swimming pool and three community gardens near the river. "
    )
    long_text = sentence * 80
    plain = Tokenizer.from_file(str(embedder.model_dir / "tokenizer.json"))
    plain.no_truncation()
    plain.no_padding()
    enc = plain.encode(long_text)
    assert len(enc.ids) > 1800  # ~2,000 tokens
    # [CLS] + 254 content tokens + [SEP] = 256: the prefix ends where token 254 ends.
    prefix = long_text[: enc.offsets[254][1]]
    v_long = embedder.embed_one(long_text)
    v_prefix = embedder.embed_one(prefix)
    assert np.isfinite(v_long).all()
    assert float(_cos(v_long, v_prefix)) >= 0.999
    # and something really different from the start is not what we got
    v_tail = embedder.embed_one(long_text[-2000:] + " and then something else entirely")
    assert v_tail.shape == (DIMENSION,)


# (e) shape, dtype, norm, degenerate inputs ---------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "😂😂😂", "🎉", "\n\t", "ok", "?"])
def test_degenerate_inputs_give_unit_vectors(embedder: Embedder, text: str) -> None:
    v = embedder.embed_one(text)
    assert v.shape == (DIMENSION,)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4


def test_embed_shapes(embedder: Embedder) -> None:
    out = embedder.embed(["a", "b c", "", "longer text here"], batch_size=2)
    assert out.shape == (4, DIMENSION) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    empty = embedder.embed([])
    assert empty.shape == (0, DIMENSION) and empty.dtype == np.float32
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


# (f) semantic sanity ------------------------------------------------------------------------


def test_semantic_sanity(embedder: Embedder) -> None:
    a, b, c = embedder.embed(
        [
            "I love hiking in the mountains",
            "My favourite hobby is trekking on alpine trails",
            "The quarterly tax filing deadline is in April",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.1


# (g) missing model --------------------------------------------------------------------------


def test_missing_model_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelNotBuiltError, match="make layer"):
        Embedder(tmp_path)


def test_default_model_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path
    with pytest.raises(ModelNotBuiltError):
        load_embedder()
    monkeypatch.delenv("MEMORY_MODEL_DIR")
    assert default_model_dir() in (
        Path("/opt/model"),
        REPO / "layers" / "model" / "build" / "model",
    )


def test_runtime_keeps_one_embedder_until_reset() -> None:
    from coda_memory import runtime

    runtime.reset()
    try:
        first = runtime.embedder()
        assert runtime.embedder() is first
        runtime.reset()
        assert runtime.embedder() is not first
    finally:
        runtime.reset()


def test_home_fallback_when_unwritable(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from coda_memory import embedder as mod

    monkeypatch.delenv("HOME", raising=False)
    mod._ensure_writable_home()
    assert os.environ["HOME"] == tempfile.gettempdir()
    monkeypatch.setenv("HOME", "/nonexistent/definitely/not/here")
    mod._ensure_writable_home()
    assert os.environ["HOME"] == tempfile.gettempdir()


def test_token_vectors_are_one_unit_vector_per_word_piece(embedder: Embedder) -> None:
    tokens, vectors = embedder.token_vectors("I bought a Fujifilm camera for Iceland.")
    assert tokens[0] == "i" and tokens[-1] == "." and "[CLS]" not in tokens and "[SEP]" not in tokens
    assert vectors.shape == (len(tokens), DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # what late interaction relies on: a word is nearest the same word in another sentence
    q_tokens, q = embedder.token_vectors("Which camera did you take to Iceland?")
    best = (q @ vectors.T).argmax(axis=1)
    assert tokens[best[q_tokens.index("camera")]] == "camera"


def test_token_vectors_read_further_windows_of_a_long_text(embedder: Embedder) -> None:
    text = " ".join(f"word{i}" for i in range(400))
    first, _ = embedder.token_vectors(text)
    assert len(first) == embedder.max_seq_length - 2  # the model's window, [CLS] and [SEP] left out
    more, vectors = embedder.token_vectors(text, max_windows=3)
    assert more[: len(first)] == first and len(more) > len(first) and len(vectors) == len(more)
