"""The committed OpenAPI document: generated from the code, covering exactly the template's
routes, every error in the API's error schema."""

from __future__ import annotations

import json

import pytest

from local.openapi import OPENAPI_FILE, docs_html, generate, render, template_operations
from local.template import load


@pytest.fixture(scope="module")
def template():
    return load()


@pytest.fixture(scope="module")
def document(template):
    return generate(template)


def test_committed_openapi_json_is_what_the_code_generates(document):
    assert OPENAPI_FILE.is_file(), "openapi.json is missing: run `make openapi`"
    assert OPENAPI_FILE.read_text() == render(document), "openapi.json is stale: run `make openapi`"


def test_every_template_route_is_documented_and_nothing_else(template, document):
    routes = {op for ops in template_operations(template).values() for op in ops}
    documented = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert routes, "the template has no API routes"
    assert documented - routes == set(), "documented but not routed by the template"
    assert routes - documented == set(), "routed by the template but not documented"


def test_document_is_openapi_3_1_with_the_api_key_scheme(document):
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["security"] == [{"ApiKey": []}]


def test_every_operation_documents_its_errors_in_the_error_schema(document):
    error_ref = "#/components/schemas/ErrorBody"
    for path, item in document["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "401" in responses and "429" in responses, (method, path)
            assert any(s.startswith("2") for s in responses), (method, path)
            for status, resp in responses.items():
                if status.startswith(("4", "5")):
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, (method, path, status)
            body = op.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                assert {"400", "413", "422"} <= set(responses), (method, path)
                ref = body["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]
            elif body:  # NDJSON: lines are rejected one by one, the whole body can be too large
                assert {"413", "422"} <= set(responses), (method, path)
            if path != "/health":
                assert "422" in responses and "503" in responses, (method, path)


def test_every_reference_resolves(document):
    names = set(document["components"]["schemas"])
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs and all(r.startswith("#/components/schemas/") for r in refs)
    assert {r.rsplit("/", 1)[1] for r in refs} <= names


def test_request_bodies_are_the_models_the_handlers_validate_with(document):
    from coda_memory.models import ContextRequest, IngestItem, SearchRequest

    schemas = document["components"]["schemas"]
    for model in (IngestItem, SearchRequest, ContextRequest):
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields)
        assert schemas[model.__name__]["additionalProperties"] is False


def test_docs_page_is_self_contained(document):
    page = docs_html(document)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for path in document["paths"]:
        assert json.dumps(path)[1:-1] in page


def test_operation_ids_are_unique_across_the_merged_functions(document):
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(op.get("description") for item in document["paths"].values() for op in item.values())


def test_links_name_existing_operations_and_their_parameters(document):
    operations = {op["operationId"]: op for item in document["paths"].values() for op in item.values()}
    found = 0
    for item in document["paths"].values():
        for op in item.values():
            for resp in op["responses"].values():
                for link in resp.get("links", {}).values():
                    target = operations[link["operationId"]]
                    names = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= names, link
                    found += 1
    assert found >= 4


def test_every_uuid_the_api_reads_is_described_by_its_pattern(document):
    """``format: uuid`` alone lets schema-driven clients and fuzzers generate any string (the
    format is an annotation to most of them): every id the API reads also carries the pattern
    of the canonical form, so a generated request is one the API can serve."""
    import re

    from coda_memory.models import UUID_PATTERN

    found: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("format") == "uuid":
                found.append(where)
                assert node.get("pattern") == UUID_PATTERN, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    for path, item in document["paths"].items():
        for method, op in item.items():
            walk(op.get("parameters", []), f"{method.upper()} {path} parameters")
            walk(op.get("requestBody", {}), f"{method.upper()} {path} body")
    for name in ("MemoryPatch", "IngestItem", "RelationSpec"):
        walk(document["components"]["schemas"][name], name)
    assert len(found) >= 8, found  # the path ids, superseded_by, supersedes, relation targets
    assert re.fullmatch(UUID_PATTERN, "3f0c1b2a-0000-4000-8000-00000000abcd")
