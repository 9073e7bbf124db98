"""The committed OpenAPI document (``openapi.json``), generated from the code.

    python -m local.openapi            # (re)write openapi.json   (make openapi)
    python -m local.openapi --check    # exit 1 when openapi.json differs from the code

The routes come from ``infra/template.yaml`` (the single source of routes): each API function's
module is imported (as the local runner does) and its FastAPI ``app`` contributes exactly the
operations the template routes to that function; :func:`coda_memory.contract.build_document`
merges them into one document.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from .lambda_invoke import import_handler
from .template import REPO_ROOT, LocalTemplate, load

OPENAPI_FILE = REPO_ROOT / "openapi.json"


def template_operations(template: LocalTemplate) -> dict[str, set[tuple[str, str]]]:
    """{function logical id: {(METHOD, path)}} for every API route of the template (the routes
    without an API key serve the console's static files, not the API: not documented)."""
    out: dict[str, set[tuple[str, str]]] = {}
    static = {(r.method, r.path) for r in template.open_routes()}
    for route in template.routes:
        if (route.method, route.path) not in static:
            out.setdefault(route.function, set()).add((route.method, route.path))
    return out


def function_apps(template: LocalTemplate) -> list[tuple[Any, set[tuple[str, str]]]]:
    """(FastAPI app, operations) of each API function, imported as the local runner does."""
    apps = []
    for logical_id, operations in sorted(template_operations(template).items()):
        spec = template.functions[logical_id]
        import_handler(spec)  # imports the module as the local runner does
        module = sys.modules.get(spec.dotted_module or f"_local_lambda_{spec.logical_id}")
        app = getattr(module, "app", None)
        if app is None or not hasattr(app, "openapi"):
            raise RuntimeError(f"{spec.module_file} has no FastAPI `app` to document")
        apps.append((app, operations))
    return apps


def generate(template: LocalTemplate | None = None) -> dict[str, Any]:
    from coda_memory.contract import build_document

    return build_document(function_apps(template or load()))


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.openapi", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed file is stale")
    parser.add_argument("--output", type=Path, default=OPENAPI_FILE)
    args = parser.parse_args(argv)
    text = render(generate())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(args.output), "generated"))
            print(f"\n{args.output} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --- the docs page of the local gateway (GET /docs): plain HTML, no script, no CDN -------------


def _ref_name(schema: Any) -> str:
    if isinstance(schema, dict) and "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return json.dumps(schema, ensure_ascii=False) if schema else ""


def docs_html(document: dict[str, Any]) -> str:
    """A self-contained page listing every operation (parameters, body, responses) and every
    schema of ``document``, linked by name."""
    from html import escape

    def schema_link(schema: Any) -> str:
        name = _ref_name(schema)
        if isinstance(schema, dict) and "$ref" in schema:
            return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
        return f"<code>{escape(name)}</code>"

    info = document.get("info", {})
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "h2{border-bottom:1px solid #ccc}.op{margin:1.2rem 0;padding:.6rem 1rem;border:1px solid #ddd;"
        "border-radius:6px}.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}"
        "pre{background:#f6f6f6;padding:.5rem;overflow:auto}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))} <small>{escape(str(info.get('version', '')))}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
        f"{escape(str(document.get('openapi', '')))}).</p><h2>Operations</h2>",
    ]
    for path, item in document.get("paths", {}).items():
        for method, op in item.items():
            out.append(f"<div class='op'><span class='m'>{escape(method)}</span><code>{escape(path)}</code>"
                       f" &mdash; {escape(op.get('summary', ''))}")
            if op.get("description"):
                out.append(f"<p>{escape(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>")
                for p in params:
                    out.append(f"<tr><td>{escape(p['name'])}</td><td>{escape(p['in'])}</td>"
                               f"<td>{'yes' if p.get('required') else 'no'}</td>"
                               f"<td>{schema_link(p.get('schema'))}</td></tr>")
                out.append("</table>")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out.append(f"<p>Body ({escape(media)}): {schema_link(content.get('schema'))}</p>")
            out.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
            for status, resp in op.get("responses", {}).items():
                content = resp.get("content", {}).get("application/json", {})
                out.append(f"<tr><td>{escape(str(status))}</td><td>{escape(resp.get('description', ''))}</td>"
                           f"<td>{schema_link(content.get('schema'))}</td></tr>")
            out.append("</table></div>")
    out.append("<h2>Schemas</h2>")
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        out.append(f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>"
                   f"<pre>{escape(json.dumps(schema, indent=2, ensure_ascii=False))}</pre>")
    out.append("</body></html>")
    return "\n".join(out)
