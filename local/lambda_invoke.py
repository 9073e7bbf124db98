"""In-process Lambda runner, and the Lambda Invoke endpoint (what ``sam local start-lambda``
offers) on 127.0.0.1:3001.

:class:`InProcessRunner` implements the slice of SAM CLI's ``LocalLambdaRunner`` interface that
SAM's own local services call (``invoke``, ``get_function``, ``is_debugging``), but instead of a
Docker container it imports the function's module (``CodeUri`` + ``Handler`` of the template)
and calls ``handler(event, context)`` in a worker thread (the API handlers give their thread
the event loop mangum needs: ``coda_memory.api.lambda_handler``). A
handler exception becomes Lambda's error payload (``errorMessage``/``errorType``/``stackTrace``),
which the services turn into ``X-Amz-Function-Error: Unhandled`` -- like Lambda.

:func:`make_invoke_app` wires SAM CLI's ``LocalLambdaHttpService`` (the start-lambda Flask app)
to the runner, so ``boto3.client("lambda", endpoint_url="http://127.0.0.1:3001").invoke(...)``
works with the template's logical ids, ``FunctionName`` values and ARNs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from .apigw import LambdaContext
from .template import REPO_ROOT, FunctionSpec, LocalTemplate

log = logging.getLogger("local.lambda")


@dataclass
class InvokeResult:
    payload: str  # JSON text, as Lambda returns it
    error: bool
    duration_ms: float


def normalize_function_name(identifier: str) -> str:
    """``name``, ``name:qualifier``, a full or partial ARN -> ``name`` (as Lambda accepts)."""
    from samcli.lib.utils.name_utils import normalize_sam_function_identifier

    try:
        name = normalize_sam_function_identifier(identifier)
    except Exception:
        name = identifier
    if ":" in name:  # name:alias / name:version
        name = name.split(":", 1)[0]
    return name


class FunctionNotFoundError(KeyError):
    pass


def import_handler(spec: FunctionSpec) -> Any:
    """The function's ``handler`` callable (``CodeUri`` + ``Handler``), imported in this process."""
    dotted = spec.dotted_module
    if dotted:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        module = importlib.import_module(dotted)
    else:
        # Code outside the repo: load the file under a private module name.
        name = f"_local_lambda_{spec.logical_id}"
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, spec.module_file)
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"cannot load {spec.module_file}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
    return getattr(module, spec.attr)


class InProcessRunner:
    """Runs the template's functions in this process, ``workers`` invocations at a time."""

    def __init__(self, template: LocalTemplate, workers: int = 16) -> None:
        self.template = template
        self._by_name: dict[str, FunctionSpec] = {}
        for spec in template.functions.values():
            self._by_name[spec.logical_id] = spec
            self._by_name.setdefault(spec.function_name, spec)
        self._handlers: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="lambda"
        )

    # --- lookup and loading ------------------------------------------------------------------
    def resolve(self, identifier: str) -> FunctionSpec:
        name = normalize_function_name(identifier)
        spec = self._by_name.get(name)
        if spec is None:
            raise FunctionNotFoundError(name)
        return spec

    def load_handler(self, spec: FunctionSpec) -> Any:
        handler = self._handlers.get(spec.logical_id)
        if handler is not None:
            return handler
        with self._load_lock:
            handler = self._handlers.get(spec.logical_id)
            if handler is not None:
                return handler
            handler = import_handler(spec)
            self._handlers[spec.logical_id] = handler
            return handler

    def preload(self) -> dict[str, str]:
        """Import every handler now; returns {logical id: error} for those that failed."""
        errors = {}
        for spec in self.template.functions.values():
            try:
                self.load_handler(spec)
            except Exception as exc:
                errors[spec.logical_id] = f"{type(exc).__name__}: {exc}"
        return errors

    # --- invoking ----------------------------------------------------------------------------
    def _call(self, spec: FunctionSpec, event: Any, request_id: str | None) -> str:
        handler = self.load_handler(spec)
        context = LambdaContext(spec.function_name, memory_mb=spec.memory_mb, timeout_s=spec.timeout_s,
                                request_id=request_id)
        result = handler(event, context)
        return json.dumps(result)

    def invoke_event(self, identifier: str, event: Any, request_id: str | None = None) -> InvokeResult:
        """Invoke synchronously (RequestResponse); never raises for handler errors."""
        spec = self.resolve(identifier)
        t0 = time.perf_counter()
        future = self._pool.submit(self._call, spec, event, request_id)
        try:
            payload, error = future.result(timeout=spec.timeout_s), False
        except FutureTimeout:
            payload, error = json.dumps({
                "errorMessage": f"Task timed out after {spec.timeout_s:.2f} seconds",
                "errorType": "Sandbox.Timedout",
            }), True
        except Exception as exc:
            log.error("%s raised %s", spec.logical_id, "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
            payload, error = json.dumps({
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }), True
        return InvokeResult(payload, error, (time.perf_counter() - t0) * 1000)

    # --- the LocalLambdaRunner interface used by SAM CLI's local services --------------------
    def is_debugging(self) -> bool:
        return False

    def get_function(self, function_identifier: str, tenant_id: str | None = None) -> Any:
        from samcli.local.lambdafn.exceptions import FunctionNotFound

        try:
            return self.resolve(function_identifier).sam_function
        except FunctionNotFoundError:
            raise FunctionNotFound(f"Unable to find a Function with name '{function_identifier}'") from None

    def invoke(
        self,
        function_identifier: str,
        event: str,
        tenant_id: str | None = None,
        stdout: Any = None,
        stderr: Any = None,
        **_: Any,
    ) -> dict[str, str] | None:
        from samcli.local.lambdafn.exceptions import FunctionNotFound

        try:
            data = json.loads(event) if event else {}
        except ValueError:
            data = event
        try:
            result = self.invoke_event(function_identifier, data)
        except FunctionNotFoundError:
            raise FunctionNotFound(f"Unable to find a Function with name '{function_identifier}'") from None
        if stdout is not None:
            stdout.write_str(result.payload)
            stdout.flush()
        return None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_invoke_app(runner: InProcessRunner, port: int, host: str = "127.0.0.1") -> Any:
    """The Flask app of SAM CLI's ``LocalLambdaHttpService`` (start-lambda), with our runner,
    plus one log line per invoke."""
    from flask import g, request
    from samcli.local.lambda_service.local_lambda_http_service import LocalLambdaHttpService

    service = LocalLambdaHttpService(lambda_runner=runner, port=port, host=host)
    service.create()
    app = service._app

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()

    @app.after_request
    def _log(response: Any) -> Any:
        ms = (time.perf_counter() - g.get("t0", time.perf_counter())) * 1000
        name = (request.view_args or {}).get("function_name", "-")
        err = response.headers.get("X-Amz-Function-Error")
        log.info("invoke %s -> %s%s %.1f ms", name, response.status_code,
                 f" ({err})" if err else "", ms)
        return response

    return app
