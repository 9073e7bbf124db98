"""The ConsoleFunction: the console's static files, without an API key, with a strict policy,
and nothing outside its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.console import app
from local.template import load


@pytest.fixture()
def assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("not for the web")
    monkeypatch.setattr(app, "ASSETS", tmp_path)
    return tmp_path


def _get(proxy: str | None, method: str = "GET") -> dict:
    return app.handler({"httpMethod": method, "pathParameters": {"proxy": proxy} if proxy is not None else None})


def test_the_template_serves_the_console_without_a_key():
    tpl = load()
    assert {(r.method, r.path, r.function) for r in tpl.open_routes()} == {
        ("GET", "/console", "ConsoleFunction"), ("GET", "/console/{proxy+}", "ConsoleFunction")}
    assert tpl.api_key_required()  # every other route still needs the key


def test_page_and_assets_with_security_headers(assets: Path):
    page = _get(None)
    assert page["statusCode"] == 200 and "<title>console</title>" in page["body"]
    headers = page["headers"]
    assert headers["Content-Type"].startswith("text/html") and headers["Cache-Control"] == "no-store"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    script = _get("assets/index-abc.js")
    assert script["statusCode"] == 200 and script["body"] == "console.log(1)"
    assert "javascript" in script["headers"]["Content-Type"] and "immutable" in script["headers"]["Cache-Control"]
    assert _get("memories")["body"] == page["body"]  # a path without an extension is the page


@pytest.mark.parametrize("proxy", ["../secret.txt", "assets/../../secret.txt", "%2e%2e/secret.txt", "nope.js"])
def test_nothing_outside_the_folder_and_nothing_missing(assets: Path, proxy: str):
    r = _get(proxy)
    assert r["statusCode"] == 404 and "not for the web" not in r["body"]


def test_only_reads(assets: Path):
    assert _get(None, method="POST")["statusCode"] == 405


def test_unbuilt_console_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(app, "ASSETS", tmp_path)
    r = _get(None)
    assert r["statusCode"] == 503 and "make console" in r["body"]
