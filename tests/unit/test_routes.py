"""The route table read from infra/template.yaml, and how a request finds its route."""

from __future__ import annotations

import pytest

from bench.common import percentile
from local.template import DEFAULT_TEMPLATE, Route, load


def test_a_route_matches_its_method_and_fills_path_parameters():
    route = Route("GET", "/memory/{id}", "IngestFunction")
    assert route.match("GET", "/memory/abc-1") == {"id": "abc-1"}
    assert route.match("get", "/memory/abc-1") == {"id": "abc-1"}
    assert route.match("DELETE", "/memory/abc-1") is None
    assert route.match("GET", "/memory/abc/history") is None  # a parameter is one path segment
    assert route.match("GET", "/memory/") is None
    assert Route("DELETE", "/users/{user_id}/memories", "F").match("DELETE", "/users/u.1/memories") == {"user_id": "u.1"}


def test_the_template_routes_every_request_to_one_function():
    template = load(DEFAULT_TEMPLATE)
    assert len({(r.method, r.path) for r in template.routes}) == len(template.routes)
    route, params = template.route_for("POST", "/search")
    assert (route.function, params) == ("RetrieveFunction", {})
    route, params = template.route_for("DELETE", "/memory/0f")
    assert (route.path, route.function, params) == ("/memory/{id}", "IngestFunction", {"id": "0f"})
    with pytest.raises(KeyError):
        template.route_for("PUT", "/search")


def test_percentile_is_nearest_rank():
    samples = [float(v) for v in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 95), percentile(samples, 99)) == (50.0, 95.0, 99.0)
    assert percentile([3.0], 99) == 3.0
    assert percentile([5.0, 1.0], 50) == 1.0 and percentile([5.0, 1.0], 51) == 5.0
