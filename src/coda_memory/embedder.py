"""Run-time text embedder: int8 ONNX all-MiniLM-L6-v2 on onnxruntime.

Reproduces sentence-transformers' ``all-MiniLM-L6-v2`` encoding (truncate to 256 tokens, mean
pooling over the attention mask, L2 normalisation) without torch. Only onnxruntime, tokenizers,
numpy and the standard library are used, and onnxruntime/tokenizers are imported lazily when an
:class:`Embedder` is created, so importing this module is cheap.

The model files come from the model layer (``layers/model/build.py``): ``model.onnx``,
``tokenizer.json`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import ThreadPoolExecutor

    import onnxruntime
    from tokenizers import Tokenizer

__all__ = [
    "DIMENSION",
    "MAX_SEQ_LENGTH",
    "MODEL_NAME",
    "Embedder",
    "ModelNotBuiltError",
    "default_model_dir",
    "load_embedder",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
MAX_SEQ_LENGTH = 256
#: tokens a piece of a long text shares with the piece before it (Embedder.embed_pieces)
PIECE_OVERLAP = 32

LAMBDA_LAYER_MODEL_DIR = Path("/opt/model")
REPO_MODEL_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "build" / "model"

_REQUIRED_FILES = ("model.onnx", "tokenizer.json")


class ModelNotBuiltError(RuntimeError):
    """The model files are missing: build them with ``make layer``."""


def default_model_dir() -> Path:
    """Where the model lives, in order of preference.

    1. ``$MEMORY_MODEL_DIR`` when set (used as is, even if empty: a wrong setting should fail
       loudly rather than silently fall back);
    2. ``/opt/model`` when it has ``model.onnx`` (the Lambda model layer);
    3. ``<repo>/layers/model/build/model`` (the local build output).
    """
    env = os.environ.get("MEMORY_MODEL_DIR")
    if env:
        return Path(env)
    if (LAMBDA_LAYER_MODEL_DIR / "model.onnx").is_file():
        return LAMBDA_LAYER_MODEL_DIR
    return REPO_MODEL_DIR


def _ensure_writable_home() -> None:
    """onnxruntime writes under ``$HOME/.cache``; on Lambda HOME is unset or read-only."""
    home = os.environ.get("HOME")
    if home and os.path.isdir(home) and os.access(home, os.W_OK):
        return
    os.environ["HOME"] = tempfile.gettempdir()


class Embedder:
    """Sentence embeddings from the int8 ONNX MiniLM model.

    One instance holds one ONNX session; create it once per process (see :func:`get_embedder`).
    ``embed`` is safe to call from several threads (onnxruntime sessions and tokenizers are).
    """

    dimension: int
    model_name: str
    quantization: str
    manifest: dict[str, Any]
    model_dir: Path
    max_seq_length: int
    default_batch_size: int

    def __init__(self, model_dir: Path | None = None, threads: int = 1, parallel: int | None = None) -> None:
        """Load the tokenizer and create the ONNX session.

        :param model_dir: directory with ``model.onnx``, ``tokenizer.json`` and ``manifest.json``;
            defaults to :func:`default_model_dir`.
        :param threads: onnxruntime intra-op threads (1 is best on a busy 2-vCPU box).
        :param parallel: how many texts of one call may run at the same time when they are
            embedded one by one (setting ``MEMORY_EMBED_PARALLEL``; default: the number of
            CPUs, at most 4). Each text still runs alone through the model, so results are identical
            to a sequential run; only the wall time changes (measured 360 -> 720 texts/s on 2
            vCPUs).
        :raises ModelNotBuiltError: when the model files are missing.
        """
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        missing = [n for n in _REQUIRED_FILES if not (self.model_dir / n).is_file()]
        if missing:
            raise ModelNotBuiltError(
                f"embedding model not found in {self.model_dir} (missing {', '.join(missing)}): "
                "run `make layer` to build it, or set MEMORY_MODEL_DIR to a built model directory"
            )
        manifest_path = self.model_dir / "manifest.json"
        self.manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        self.model_name = str(self.manifest.get("model_name", MODEL_NAME))
        self.dimension = int(self.manifest.get("dimension", DIMENSION))
        self.max_seq_length = int(self.manifest.get("max_seq_length", MAX_SEQ_LENGTH))
        self.quantization = _describe_quantization(self.manifest.get("quantization"))
        q = self.manifest.get("quantization")
        dynamic = isinstance(q, dict) and q.get("type") == "dynamic"
        self.default_batch_size = 1 if dynamic else 32

        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # The shipped tokenizer.json truncates and pads to 128; sentence-transformers uses 256
        # and pads to the longest sequence of the batch.
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_token = "[PAD]"  # noqa: S105 - a tokenizer token, not a password
        pad_id = tokenizer.token_to_id(pad_token)
        tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad_token)
        self._tokenizer: Tokenizer = tokenizer
        self._pieces_tokenizer: Tokenizer | None = None

        _ensure_writable_home()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.threads = opts.intra_op_num_threads
        self._session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(self.model_dir / "model.onnx"),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
        )
        if parallel is None:
            parallel = min(4, os.cpu_count() or 1)
        self.parallel = max(1, parallel)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> npt.NDArray[np.float32]:
        """Embed texts; returns an ``(n, dimension)`` float32 array of unit vectors, input order.

        Texts are tokenised together and run through the model in groups of ``batch_size``
        texts of similar token length (sorted, padded to the longest of the group).

        ``batch_size`` defaults to :attr:`default_batch_size`: 1 for a dynamically quantised
        model, 32 otherwise. Dynamic int8 quantisation computes each activation scale over the
        whole input tensor, so texts run in one batch change each other's embeddings (measured:
        cosine to the text run alone down to ~0.95 for very short texts, and further from
        fp32). Running one text at a time keeps an embedding independent of what else is in
        the call, at ~15-25% lower throughput. Pass a larger ``batch_size`` explicitly to trade
        that exactness for speed.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings; use embed_one() for one string")
        n = len(texts)
        out = np.empty((n, self.dimension), dtype=np.float32)
        if n == 0:
            return out
        if batch_size is None:
            batch_size = self.default_batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")

        # Padding is to the longest text of the whole call; each sorted batch is then cut to
        # its own longest, which is exactly "pad to longest in the batch".
        encodings = self._tokenizer.encode_batch([str(t) for t in texts])
        all_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        all_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        lengths = all_mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")

        def run_batches(batches: Sequence[npt.NDArray[np.intp]]) -> None:
            for idx in batches:
                width = max(1, int(lengths[idx].max()))
                out[idx] = self._run(all_ids[idx, :width], all_mask[idx, :width])

        batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
        workers = min(self.parallel, len(batches) // 2)
        if workers > 1:
            # Interleave so every worker gets a similar mix of lengths; session.run releases
            # the GIL, and each batch is still computed on its own.
            pool = self._executor()
            list(pool.map(run_batches, [batches[w::workers] for w in range(workers)]))
        else:
            run_batches(batches)
        return out

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="embed")
        return self._pool

    def close(self) -> None:
        """Stop the batch worker threads (the session itself needs no closing)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None

    def embed_pieces(self, texts: Sequence[str], max_pieces: int) -> list[npt.NDArray[np.float32]]:
        """The embeddings of the parts of each text the model does not read: the model reads
        the first ``max_seq_length`` tokens (that is :meth:`embed`); a longer text is cut into
        further windows of the same length, each starting :data:`PIECE_OVERLAP` tokens before
        the previous one ended (a sentence cut by a window's end is read whole by the next),
        at most ``max_pieces - 1`` of them. One ``(k, dimension)`` array per text (``k = 0``
        for a text the model reads whole)."""
        out: list[npt.NDArray[np.float32]] = [np.empty((0, self.dimension), dtype=np.float32) for _ in texts]
        if max_pieces < 2:
            return out
        windows: list[tuple[int, Any]] = []
        for i, enc in enumerate(self._piece_tokenizer().encode_batch([str(t) for t in texts])):
            windows += [(i, w) for w in enc.overflowing[: max_pieces - 1]]
        if not windows:
            return out
        vectors = np.empty((len(windows), self.dimension), dtype=np.float32)
        for j, (_, w) in enumerate(windows):
            real = int(sum(w.attention_mask))
            ids = np.array([w.ids[:real]], dtype=np.int64)
            vectors[j] = self._run(ids, np.ones_like(ids))[0]
        owner = np.array([i for i, _ in windows])
        for i in set(owner.tolist()):
            out[i] = vectors[owner == i]
        return out

    def _piece_tokenizer(self) -> Tokenizer:
        """A copy of the tokenizer that keeps what truncation cuts off, as overlapping windows."""
        if self._pieces_tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self._tokenizer.to_str())
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_seq_length, stride=PIECE_OVERLAP)
            self._pieces_tokenizer = tok
        return self._pieces_tokenizer

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """Embed one text; returns a ``(dimension,)`` float32 unit vector -- the same as
        ``embed([text])[0]`` without the batch bookkeeping (~0.1 ms of a search's CPU)."""
        enc = self._tokenizer.encode(str(text))
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        return self._run(ids, mask)[0]

    def token_vectors(self, text: str, max_windows: int = 1) -> tuple[list[str], npt.NDArray[np.float32]]:
        """The model's output per token of ``text`` (its last hidden state, before pooling), as
        unit vectors, with the tokens' strings; [CLS] and [SEP] left out. The model reads the
        first ``max_seq_length`` tokens; with ``max_windows`` > 1 a longer text is read on in
        the windows of :meth:`embed_pieces`, their tokens appended. Late interaction (ColBERT's
        MaxSim, measured in bench/rerank_offline.py) compares these, token by token."""
        enc = self._piece_tokenizer().encode(str(text))
        tokens: list[str] = []
        vectors: list[npt.NDArray[np.float32]] = []
        for window in [enc, *enc.overflowing[: max(0, max_windows - 1)]]:
            ids = np.array([window.ids], dtype=np.int64)
            hidden = self._hidden(ids, np.ones_like(ids))[0]
            keep = [i for i, special in enumerate(window.special_tokens_mask) if not special]
            tokens += [window.tokens[i] for i in keep]
            vectors.append(hidden[keep])
        out = np.concatenate(vectors)
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return tokens, out

    def _hidden(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run([self._output_name], feeds)
        return np.asarray(hidden, dtype=np.float32)

    def _run(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        hidden = self._hidden(ids, mask)
        # Mean pooling over real tokens, then L2 normalisation (as sentence-transformers).
        m = mask[:, :, None].astype(np.float32)
        summed = (hidden * m).sum(axis=1)
        counts = np.clip(m.sum(axis=1), 1e-9, None)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


def _describe_quantization(q: Any) -> str:
    """``{"type": "dynamic", "weight_type": "QUInt8", "per_channel": true}`` ->
    ``"int8-dynamic-per-channel"``."""
    if not isinstance(q, dict):
        return "unknown"
    weight = str(q.get("weight_type", "")).lower()
    bits = "int8" if "int8" in weight else (weight or "unknown")
    kind = str(q.get("type", "unknown"))
    granularity = "per-channel" if q.get("per_channel") else "per-tensor"
    return f"{bits}-{kind}-{granularity}"


def load_embedder(model_dir: Path | None = None, threads: int = 1, parallel: int | None = None) -> Embedder:
    """Load the model from ``model_dir`` (default: :func:`default_model_dir`). A process keeps
    one: ``coda_memory.runtime.embedder()``."""
    resolved = (Path(model_dir) if model_dir is not None else default_model_dir()).resolve()
    return Embedder(resolved, threads=threads, parallel=parallel)
