"""Read ``infra/template.yaml`` with SAM CLI's own providers -- the single source of truth for
functions, API routes and schedules of the local runtime (no second route list anywhere).

``SamLocalStackProvider`` applies the SAM transform's view of the template (globals merged,
intrinsics resolved where SAM CLI can), ``SamFunctionProvider`` yields the functions and
``ApiProvider`` the API Gateway routes, exactly as ``sam local start-api`` sees them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "template.yaml"

os.environ.setdefault("SAM_CLI_TELEMETRY", "0")


@dataclass(frozen=True)
class FunctionSpec:
    """One ``AWS::Serverless::Function`` as the local runner needs it."""

    logical_id: str
    function_name: str  # the FunctionName property if set, else the logical id
    code_dir: Path
    handler: str  # "module.attr", relative to code_dir
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    events: dict[str, Any]
    sam_function: Any = field(repr=False, compare=False)  # samcli.lib.providers.provider.Function

    @property
    def module_file(self) -> Path:
        module = self.handler.rsplit(".", 1)[0]
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def dotted_module(self) -> str | None:
        """``functions.ingest.app`` when the code dir lies inside the repo (importable as a
        package from the repo root), else None."""
        try:
            rel = self.code_dir.resolve().relative_to(REPO_ROOT)
        except ValueError:
            return None
        parts = [*rel.parts, *self.handler.rsplit(".", 1)[0].split(".")]
        if not all(p.isidentifier() for p in parts):
            return None
        return ".".join(parts)

    @property
    def attr(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Schedule:
    function: str  # logical id
    event_name: str
    expression: str  # rate(...) / cron(...)
    enabled: bool
    input: str | None = None


@dataclass(frozen=True)
class Route:
    """One API route of the template: ``method`` + resource ``path`` (``/memory/{id}``) served
    by the function ``function`` (logical id)."""

    method: str
    path: str
    function: str

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when ``method path`` is this route, else None."""
        if method.upper() != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(self.path))  # {proxy+}: the rest
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


@dataclass
class LocalTemplate:
    path: Path
    stacks: list[Any]
    functions: dict[str, FunctionSpec]
    api: Any  # samcli.lib.providers.provider.Api

    @property
    def schedules(self) -> list[Schedule]:
        found = []
        for spec in self.functions.values():
            for name, event in (spec.events or {}).items():
                if not isinstance(event, dict) or event.get("Type") not in ("Schedule", "ScheduleV2"):
                    continue
                props = event.get("Properties") or {}
                expr = props.get("Schedule") or props.get("ScheduleExpression")
                if not isinstance(expr, str):
                    continue
                state = props.get("State")
                enabled = props.get("Enabled", True) is not False and state != "DISABLED"
                raw_input = props.get("Input")
                found.append(Schedule(spec.logical_id, name, expr, enabled,
                                      raw_input if isinstance(raw_input, str) else None))
        return found

    @property
    def routes(self) -> list[Route]:
        """Every (method, resource path) of the REST API and the function behind it."""
        return sorted(
            (Route(method.upper(), r.path, self._logical_id(r.function_name)) for r in self.api.routes
             for method in r.methods),
            key=lambda r: (r.path, r.method),
        )

    def route_for(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route serving ``method path`` and its path parameters (KeyError if none)."""
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        raise KeyError(f"no route for {method} {path}")

    def _logical_id(self, name: str) -> str:
        for spec in self.functions.values():
            if name in (spec.logical_id, spec.function_name):
                return spec.logical_id
        return name

    def open_routes(self) -> list[Route]:
        """Routes whose ``Api`` event turns the API key off (``Auth: {ApiKeyRequired: false}``):
        the console's static assets, which a browser fetches without a key."""
        found = []
        for spec in self.functions.values():
            for event in (spec.events or {}).values():
                if not isinstance(event, dict) or event.get("Type") != "Api":
                    continue
                props = event.get("Properties") or {}
                if (props.get("Auth") or {}).get("ApiKeyRequired") is False:
                    found.append(Route(str(props.get("Method", "")).upper(), str(props.get("Path", "")),
                                       spec.logical_id))
        return found

    def api_key_required(self) -> bool:
        """True when the template's REST API requires an API key (``Auth.ApiKeyRequired``)."""
        for stack in self.stacks:
            for resource in (stack.resources or {}).values():
                if not isinstance(resource, dict):
                    continue
                if resource.get("Type") == "AWS::Serverless::Api":
                    auth = (resource.get("Properties") or {}).get("Auth") or {}
                    if auth.get("ApiKeyRequired"):
                        return True
        return False


def _code_dir(codeuri: str | None, template_dir: Path) -> Path:
    raw = codeuri or "."
    path = Path(raw)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), template_dir, REPO_ROOT):
        candidate = (base / path).resolve()
        if candidate.is_dir():
            return candidate
    return (template_dir / path).resolve()


def load(path: Path = DEFAULT_TEMPLATE, parameter_overrides: dict[str, str] | None = None) -> LocalTemplate:
    """Parse the template with SAM CLI's providers."""
    # SAM CLI logs template warnings (e.g. unresolved parameters) at INFO/WARNING; keep quiet.
    logging.getLogger("samcli").setLevel(logging.ERROR)
    from samcli.lib.providers.api_provider import ApiProvider
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    path = Path(path).resolve()
    stacks, _ = SamLocalStackProvider.get_stacks(str(path), parameter_overrides=parameter_overrides)
    provider = SamFunctionProvider(stacks, ignore_code_extraction_warnings=True)
    functions: dict[str, FunctionSpec] = {}
    for fn in provider.get_all():
        if not fn.handler:
            continue  # image functions are not run locally
        env = {}
        variables = (fn.environment or {}).get("Variables") or {}
        for key, value in variables.items():
            if isinstance(value, bool):
                env[key] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                env[key] = str(value)
        functions[fn.name] = FunctionSpec(
            logical_id=fn.name,
            function_name=fn.functionname or fn.name,
            code_dir=_code_dir(fn.codeuri, path.parent),
            handler=fn.handler,
            timeout_s=int(fn.timeout or 3),
            memory_mb=int(fn.memory or 128),
            environment=env,
            events=dict(fn.events or {}),
            sam_function=fn,
        )
    api = ApiProvider(stacks, cwd=str(path.parent)).api
    return LocalTemplate(path=path, stacks=stacks, functions=functions, api=api)
