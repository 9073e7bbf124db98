"""Local API Gateway (REST, v1 proxy events) on 127.0.0.1:3000.

This is SAM CLI's own ``LocalApigwService`` -- the Flask app behind ``sam local start-api``,
with the routes SAM's ``ApiProvider`` reads from ``infra/template.yaml`` -- driven by the
in-process runner instead of Docker. So the event a handler gets is the one ``sam local
start-api`` would build, unknown routes answer ``403 {"message": "Missing Authentication
Token"}``, and Lambda errors ``502 {"message": "Internal server error"}``, like API Gateway.

Added on top, because SAM CLI does not emulate them:

* the API key: when the template's API has ``Auth.ApiKeyRequired``, a request without a valid
  ``X-API-Key`` is refused by the gateway with the API contract's 401 error body -- the
  template maps API Gateway's ``API_KEY`` response to the same 401, so both answer alike.
  Valid keys are the service key (``MEMORY_API_KEY``) and, like keys registered in the usage
  plan, active keys stored (hashed) in the ``api_keys`` table;
* ``requestContext.identity.apiKey`` / ``apiKeyId`` in the event, as API Gateway sets them;
* ``GET /openapi.json`` (the API's OpenAPI document, generated from the functions' code as
  ``make openapi`` does) and ``GET /docs`` (a page rendering it, no script or CDN), behind the
  same API key;
* one log line per request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .lambda_invoke import InProcessRunner
from .template import LocalTemplate

if TYPE_CHECKING:
    from coda_memory.db.pool import Database

log = logging.getLogger("local.gateway")

# Same status and body as the template's GatewayResponses.API_KEY and the functions' own 401.
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "missing or invalid X-API-Key"}}


class ApiKeyCheck:
    """Accepts what the API accepts: the service key, and active keys stored in ``api_keys``
    (the service's own :class:`~coda_memory.auth.Authenticator`, on a small pool of its own)."""

    def __init__(self, service_key: str | None, database_url: str | None = None) -> None:
        from coda_memory.auth import Authenticator

        self._database_url = database_url
        self._database: Database | None = None
        self._lock = threading.Lock()
        self._auth = Authenticator([service_key] if service_key else [], self._pool)

    def _pool(self) -> Database:
        if self._database_url is None:
            raise LookupError("no database to look keys up in")
        with self._lock:
            if self._database is None:
                from coda_memory.db.pool import Database

                self._database = Database(self._database_url, max_size=2, connect_timeout=3)
            return self._database

    def __call__(self, key: str | None) -> bool:
        from coda_memory.errors import Unauthorized

        try:
            self._auth.authenticate(key)
            return True
        except Unauthorized:
            return False
        except Exception as exc:  # the gateway stays up when the database is not
            log.warning("api key lookup failed: %s", type(exc).__name__)
            return False


def make_gateway_app(
    template: LocalTemplate,
    runner: InProcessRunner,
    port: int,
    host: str = "127.0.0.1",
    api_key_check: Callable[[str | None], bool] | None = None,
) -> Any:
    """SAM CLI's local API Gateway Flask app for the template's routes, run by ``runner``."""
    from flask import g, jsonify, make_response, request
    from samcli.local.apigw.local_apigw_service import LocalApigwService

    require_key = api_key_check is not None and template.api_key_required()
    open_routes = template.open_routes()

    class Gateway(LocalApigwService):
        def _generate_lambda_event(self, flask_request: Any, route: Any, method: str, endpoint: str) -> dict:
            event = super()._generate_lambda_event(flask_request, route, method, endpoint)
            context = event.get("requestContext")
            if isinstance(context, dict):
                # SAM CLI 1.170 computes its default request id once (a default argument), so
                # every request would share it; API Gateway gives each request its own.
                context["requestId"] = str(uuid.uuid4())
                context["extendedRequestId"] = context["requestId"][:18]
            key = flask_request.headers.get("X-API-Key")
            identity = event.get("requestContext", {}).get("identity")
            if require_key and key and isinstance(identity, dict):
                identity["apiKey"] = key
                identity["apiKeyId"] = hashlib.sha256(key.encode()).hexdigest()[:10]
            return event

    service = Gateway(api=template.api, lambda_runner=runner, port=port, host=host)
    service.create()
    app = service._app
    # API Gateway matches a resource with or without a trailing slash (/console/ is the console's
    # page); Flask's rules are strict about it by default.
    for rule in app.url_map.iter_rules():
        rule.strict_slashes = False
    route_of = {}
    for route in template.api.routes:
        for method in route.methods:
            route_of[(method, route.path)] = route.function_name

    document: dict[str, Any] = {}
    document_lock = threading.Lock()

    def openapi_document() -> dict[str, Any]:
        # Built on first use from the functions the runner has imported (not at start-up:
        # a function that failed to load must not keep the gateway from serving).
        with document_lock:
            if not document:
                from .openapi import generate

                document.update(generate(template))
        return document

    def serve_openapi() -> Any:
        return make_response(jsonify(openapi_document()), 200)

    def serve_docs() -> Any:
        from .openapi import docs_html

        response = make_response(docs_html(openapi_document()), 200)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        return response

    app.add_url_rule("/openapi.json", "coda_openapi", serve_openapi, methods=["GET"])
    app.add_url_rule("/docs", "coda_docs", serve_docs, methods=["GET"])

    @app.before_request
    def _check_key() -> Any:
        g.t0 = time.perf_counter()
        if request.routing_exception is not None:
            return None  # unknown route: API Gateway answers 403 Missing Authentication Token
        path = request.path.rstrip("/") or "/"
        keyless = any(r.match(request.method, path) is not None for r in open_routes)
        if (require_key and not keyless and api_key_check is not None
                and not api_key_check(request.headers.get("X-API-Key"))):
            g.denied = True
            return make_response(jsonify(UNAUTHORIZED), 401)
        # SAM CLI decodes the body and query string as UTF-8 and answers anything else with a
        # 502 "Internal server error" (found by the fuzzer): a client error, answered as one.
        for part, raw in (("body", request.get_data()), ("query string", request.query_string)):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return make_response(jsonify(
                    {"error": {"code": "bad_request", "message": f"request {part} is not valid UTF-8"}}), 400)
        return None

    @app.after_request
    def _log(response: Any) -> Any:
        ms = (time.perf_counter() - g.get("t0", time.perf_counter())) * 1000
        rule = request.url_rule.rule if request.url_rule is not None else None
        fn = "-"
        if rule is not None:
            from samcli.local.apigw.path_converter import PathConverter

            fn = route_of.get((request.method, PathConverter.convert_path_to_api_gateway(rule)), "-")
        if request.endpoint in ("coda_openapi", "coda_docs"):
            fn = "gateway: openapi"
        if g.get("denied"):
            fn = "gateway: api key"
        elif rule is None:
            fn = "gateway: no route"
        log.info('%s %s %s -> %s %.1f ms [%s]', request.remote_addr, request.method,
                 request.full_path.rstrip("?"), response.status_code, ms, fn)
        return response

    return app
