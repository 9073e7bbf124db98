"""The TypeScript client's contract types (clients/typescript/src/index.ts) against openapi.json:
every interface that names a schema of the document has the same fields, the same optional
ones, and compatible JSON types -- so the client cannot drift from the server."""

from __future__ import annotations

import json
import re

import pytest

from local.openapi import OPENAPI_FILE
from local.template import REPO_ROOT

TS_FILE = REPO_ROOT / "clients" / "typescript" / "src" / "index.ts"

#: TypeScript interface -> schema of openapi.json (same name unless listed).
RENAMED = {"IngestRequest": "IngestItem", "ApiErrorBody": "ErrorBody"}
#: Interfaces that must have a schema (the request and response types of the client's calls).
REQUIRED = {"IngestRequest", "IngestResult", "BatchResponse", "SearchFilters", "SearchRequest",
            "SearchResult", "SearchResponse", "ContextRequest", "ContextResponse", "Memory", "MemoryPage",
            "MemoryPatch", "HistoryEntry", "MemoryHistory", "ImportResult", "DeleteResult", "EraseResult",
            "ApiErrorBody", "UserStats", "ServiceStats", "StateCounts", "RecallBuckets", "BusyUser", "QuotaUse",
            "ScoreParts"}

_INTERFACE = re.compile(r"export interface (\w+)(?: extends (\w+))? \{\n(.*?)\n\}", re.S)
_FIELD = re.compile(r"^  (\w+)(\??): (.+?);$", re.M)


def ts_interfaces() -> dict[str, dict[str, tuple[bool, str]]]:
    """{interface: {field: (optional, type text)}}, inherited fields included."""
    text = re.sub(r"/\*\*.*?\*/", "", TS_FILE.read_text(), flags=re.S)
    raw = {m[1]: (m[2], m[3]) for m in _INTERFACE.finditer(text)}
    out: dict[str, dict[str, tuple[bool, str]]] = {}

    def fields(name: str) -> dict[str, tuple[bool, str]]:
        if name not in out:
            base, body = raw[name]
            own = {f[1]: (f[2] == "?", f[3].strip()) for f in _FIELD.finditer(body)}
            out[name] = {**(fields(base) if base else {}), **own}
        return out[name]

    for name in raw:
        fields(name)
    return out


def _json_types(schema: dict, schemas: dict) -> set[str]:
    if "$ref" in schema:
        return _json_types(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if "anyOf" in schema:
        return set().union(*(_json_types(s, schemas) for s in schema["anyOf"]))
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {{str: "string", bool: "boolean", int: "number", float: "number"}[type(v)] for v in values}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    kinds = kind if isinstance(kind, list) else [kind]
    return {"number" if k == "integer" else k for k in kinds}


def _ts_types(text: str) -> set[str]:
    kinds = set()
    for part in (p.strip() for p in re.split(r"\|(?![^{]*\})", text)):
        if part == "null":
            kinds.add("null")
        elif part in ("string", "number", "boolean"):
            kinds.add(part)
        elif part.startswith('"') or part == "ContentType":
            kinds.add("string")
        elif part.endswith("[]"):
            kinds.add("array")
        elif part.startswith(("Record<", "{")) or part.endswith('["error"]') or part[0].isupper():
            kinds.add("object")
        elif part == "unknown":
            kinds.add("any")
    return kinds


@pytest.fixture(scope="module")
def schemas() -> dict:
    return json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]


def test_every_contract_interface_has_its_schema(schemas):
    interfaces = ts_interfaces()
    assert REQUIRED <= set(interfaces), sorted(REQUIRED - set(interfaces))
    for name in REQUIRED:
        assert RENAMED.get(name, name) in schemas, name


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_interface_matches_its_schema(name, schemas):
    fields = ts_interfaces()[name]
    schema = schemas[RENAMED.get(name, name)]
    props, required = schema["properties"], set(schema.get("required", []))
    assert set(fields) == set(props), f"{name}: TS only {set(fields) - set(props)}, schema only {set(props) - set(fields)}"
    for field, (optional, ts_type) in fields.items():
        # a field the server always sends / always needs is not optional in TS, and the reverse
        assert optional == (field not in required), f"{name}.{field}: optional in TS={optional}"
        wanted = _json_types(props[field], schemas)
        have = _ts_types(ts_type)
        if "any" in wanted or "any" in have:
            continue
        if optional:  # `x?: T` in TS stands for absent; null is a value of its own
            wanted = wanted - {"null"} or wanted
            have = have - {"null"} or have
        assert have == wanted, f"{name}.{field}: TS {ts_type!r} is {have}, schema says {wanted}"


@pytest.mark.parametrize("edit", [
    ("  token_count: number;", "  tokens: number;"),  # renamed
    ("  token_count: number;", "  token_count?: number;"),  # made optional
    ("  token_count: number;", "  token_count: string;"),  # retyped
])
def test_a_drifted_interface_is_caught(schemas, monkeypatch, tmp_path, edit):
    """The check itself: each kind of drift fails it."""
    drifted = tmp_path / "index.ts"
    drifted.write_text(TS_FILE.read_text().replace(*edit))
    monkeypatch.setitem(globals(), "TS_FILE", drifted)
    with pytest.raises(AssertionError):
        test_interface_matches_its_schema("ContextResponse", schemas)
