"""The HTTP layer's error answers (``api/app.py``): every failure is the API's error shape with
the status and code of its domain error (``errors.py``), never a framework default."""

from __future__ import annotations

from fastapi import Query
from fastapi.testclient import TestClient

from coda_memory.api.app import create_app
from coda_memory.errors import Conflict


def _client() -> TestClient:
    app = create_app("errors under test")

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug, with a secret: hunter2")

    @app.get("/conflict")
    async def conflict() -> dict:
        raise Conflict("another memory of this user already has this content", fields={"memory_id": "m-1"})

    @app.get("/typed")
    async def typed(n: int = Query()) -> dict:
        return {"n": n}

    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_exception_is_a_500_internal_error_without_its_message():
    response = _client().get("/boom")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}


def test_a_domain_error_keeps_its_status_code_and_fields():
    response = _client().get("/conflict")
    assert response.status_code == 409
    assert response.json() == {"error": {"memory_id": "m-1", "code": "conflict",
                                         "message": "another memory of this user already has this content"}}


def test_a_bad_query_parameter_is_a_422_validation_error_naming_it():
    response = _client().get("/typed", params={"n": "x"})
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["code"] == "validation_error" and body["message"].startswith("query.n:")


def test_an_unknown_route_is_a_404_not_found():
    response = _client().get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "no such route"}}
