"""The web console in a real browser (Playwright driving Debian's Chromium) against the real
local stack: the gateway of ``make run`` serving the template's ConsoleFunction and the API.

Needs Chromium (``apt-get install chromium``: ``.ci/run`` installs it and sets
``REQUIRE_BROWSER=1``, which turns a missing browser into a failure) and the built console
(``make console``, part of ``make test``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.run import LocalRuntime
from local.services import REPO_ROOT, free_port
from tests.apigw import SERVICE_KEY

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ASSETS = REPO_ROOT / "functions" / "console" / "static" / "index.html"
SCREENSHOTS = REPO_ROOT / ".local" / "console-screenshots"

if not Path(CHROMIUM).is_file() or not ASSETS.is_file():
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"browser tests required: chromium at {CHROMIUM} and {ASSETS} (make console)")
    pytest.skip("needs Chromium (apt-get install chromium) and the built console (make console)",
                allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")

XSS = ['<img src=x onerror="window.__pwned=1">', "<script>window.__pwned=1</script>"]


@pytest.fixture(scope="module")
def stack(api_env) -> Iterator[LocalRuntime]:  # type: ignore[no-untyped-def]
    """The local gateway and runner on free ports, as ``make run`` serves them (console included)."""
    local = LocalRuntime(env={**api_env, "MEMORY_MODEL_DIR": str(REPO_ROOT / "layers/model/build/model")},
                         api_port=free_port(), invoke_port=free_port(), scheduler=False, workers=8)
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def api(stack: LocalRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=60, headers={"X-API-Key": SERVICE_KEY}) as client:
        yield client


@pytest.fixture(scope="module")
def user(api: httpx.Client) -> str:
    user_id = f"console-{uuid.uuid4().hex[:8]}"
    items = [{"user_id": user_id, "content": f"Note {i:02d}: the team meets on day {i} about the roadmap",
              "content_type": "fact", "source_type": "chat", "tags": ["work"],
              "created_at": f"2026-11-{i + 1:02d}T10:00:00Z"} for i in range(24)]
    items.append({"user_id": user_id, "content": "Alice is allergic to peanuts", "content_type": "fact",
                  "source_type": "chat", "tags": ["health"], "importance": 0.9})
    items += [{"user_id": user_id, "content": payload, "content_type": "fact", "source_type": "chat",
               "tags": [payload[:60]], "metadata": {"html": payload}} for payload in XSS]
    r = api.post("/ingest/batch", json={"items": items})
    assert r.status_code == 200 and all(x["status"] == "created" for x in r.json()["results"]), r.text
    return user_id


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, stack):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.errors = errors
    yield tab
    context.close()


def sign_in(page, stack: LocalRuntime, user: str, key: str = SERVICE_KEY) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{stack.api_url}/console/")
    page.fill("input[name=api_key]", key)
    page.fill("input[name=user_id]", user)
    page.click("button[type=submit]")


def test_service_key_without_a_user_picks_one(page, stack, api, user) -> None:  # type: ignore[no-untyped-def]
    """`make run` prints the service key only: signing in with it and no user id offers the users
    with the most memories (as GET /stats lists them) and a field to type any other id."""
    sign_in(page, stack, "")
    page.wait_for_selector("ul.users button")
    expected = [u["user_id"] for u in api.get("/stats").json()["busiest_users"]]
    assert page.locator("ul.users button").evaluate_all("els => els.map(e => e.dataset.user)") == expected
    page.fill("#pick_user_id", user)
    page.click("form[aria-label='Open a user'] button[type=submit]")
    page.wait_for_selector(".memories li")
    assert page.locator(".memories li").count() == 20
    assert page.locator("header .who").inner_text() == f"user: {user}"
    page.click("button:text-is('Switch user')")  # back to the choice, still signed in
    page.wait_for_selector("ul.users button")
    page.locator("ul.users button").first.click()
    page.wait_for_selector("header .who")
    assert page.locator("header .who").inner_text() == f"user: {expected[0]}"
    assert not page.errors


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_console_is_served_without_a_key_with_a_strict_policy(stack: LocalRuntime) -> None:
    r = httpx.get(f"{stack.api_url}/console/", timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text  # no inline script: only <script ... src=...>
    # the API itself still needs the key
    assert httpx.get(f"{stack.api_url}/stats", timeout=30).status_code == 401
    # a path that climbs out of /console/ reaches no file: the client normalises it to /stats (401)
    assert httpx.get(f"{stack.api_url}/console/../stats", timeout=30).status_code == 401
    assert httpx.get(f"{stack.api_url}/console/%2e%2e/%2e%2e/pyproject.toml", timeout=30).status_code == 404


def test_browse_page_open_edit_delete_and_sign_out(page, stack, api, user) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, stack, user)
    page.wait_for_selector(".memories li")
    assert page.locator(".memories li").count() == 20  # one page, newest first
    assert "api_key" not in page.url and SERVICE_KEY not in page.url
    page.click("button:text-is('Next page')")
    page.wait_for_selector(".memories li:nth-child(27)")
    assert page.locator(".memories li").count() == 27
    shot(page, "memories")

    # open the peanut memory: every field, its history
    page.click(".memory:has-text('peanuts')")
    page.wait_for_selector(".history li")
    assert "v1 created" in page.inner_text(".history")
    memory_id = page.get_attribute(".memory:has-text('peanuts')", "data-id")
    # edit: a new version, in the history and in the API
    page.fill("textarea[name=content]", "Alice is allergic to peanuts and cashews")
    page.click("form.edit button[type=submit]")
    page.wait_for_selector(".history li:has-text('v2 updated')")
    shot(page, "memory")
    stored = api.get(f"/memory/{memory_id}", params={"user_id": user}).json()
    assert stored["content"] == "Alice is allergic to peanuts and cashews" and stored["version"] == 2

    # delete, after a confirmation (dismissed first: nothing happens)
    page.once("dialog", lambda d: d.dismiss())
    page.click("button.danger")
    assert api.get(f"/memory/{memory_id}", params={"user_id": user}).status_code == 200
    page.once("dialog", lambda d: d.accept())
    page.click("button.danger")
    page.wait_for_selector(".detail :text('Deleted.')")
    assert api.get(f"/memory/{memory_id}", params={"user_id": user}).status_code == 404

    # sign out forgets the key
    page.click("button:text-is('Sign out')")
    page.wait_for_selector("input[name=api_key]")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    page.wait_for_selector("input[name=api_key]")
    assert page.errors == []


def test_search_shows_the_score_parts_the_api_reports(page, stack, api, user) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, stack, user)
    page.wait_for_selector(".memories li")
    page.click("nav >> text=Search")
    page.fill("input[name=query]", "when does the team meet about the roadmap")
    page.fill("input[name=top_k]", "5")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("table.scores tbody tr")
    expected = api.post("/search", json={"query": "when does the team meet about the roadmap", "user_id": user,
                                         "top_k": 5, "explain": True}).json()["results"]
    rows = page.locator("table.scores tbody tr")
    assert rows.count() == len(expected) == 5
    for i, hit in enumerate(expected):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[1] == hit["content"]
        assert cells[2:10] == [f"{hit['explain'][k]:.3f}" for k in ("cosine", "lexical", "match", "importance",
                                                                     "recency", "neighbour", "length_factor",
                                                                     "relevance")]
    assert "tokens" in page.inner_text(".context h3") and "roadmap" in page.inner_text(".context pre")
    shot(page, "search")
    assert page.errors == []


def test_analytics_match_the_api(page, stack, api, user) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, stack, user)
    page.wait_for_selector(".memories li")
    page.click("nav >> text=Analytics")
    page.wait_for_selector(".cards [data-count=live]")
    stats = api.get(f"/users/{user}/stats").json()
    for state, count in stats["counts"].items():
        assert page.inner_text(f"[data-count={state}]") == str(count)
    assert page.inner_text("[data-stat='never']") == str(stats["recall"]["never"])
    assert page.locator(".chart canvas").count() >= 1
    shot(page, "analytics")
    assert page.errors == []


def test_untrusted_text_never_runs(page, stack, user) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, stack, user)
    page.wait_for_selector(".memories li")
    page.click("button:text-is('Next page')")
    page.wait_for_selector(".memory:has-text('onerror')")
    page.click(".memory:has-text('onerror')")
    page.wait_for_selector(".history li")
    page.click("nav >> text=Search")
    page.fill("input[name=query]", "script onerror pwned")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("table.scores tbody tr")
    # the payloads are on the page as text, and nothing they carry ran or became an element
    assert XSS[0] in page.inner_text("body")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#view img, #view script").count() == 0
    assert page.errors == []


def test_a_wrong_key_is_shown_as_what_it_is(page, stack, user) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, stack, user, key="not-a-key")
    page.wait_for_selector(".status:has-text('not accepted')")
