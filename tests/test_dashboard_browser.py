"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Needs `apt-get install -y chromium` (the browser at /usr/bin/chromium) and the `playwright` Python package;
Playwright's own browser downloads are never used. Without them the test is skipped, except under CI=true,
where it fails. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _require_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; under CI=true it must run", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield instance
        instance.close()


def test_sign_in_see_a_new_request_and_charts_with_data(
    browser: Any, gateway_factory: Any, fake_openai: Any, tmp_path: Path
) -> None:
    upstream = fake_openai.base_url + "/v1"
    gw = gateway_factory(
        {
            "master_key": "sk-master",
            "database_url": f"sqlite:///{tmp_path}/gw.db",
            "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": upstream}},
            "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
            "observability": {"log_store": {"flush_interval": 0.05}},
        }
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    page.goto(gw.url("/ui"))
    assert page.url.endswith("/ui/login")
    page.fill("#key", "wrong-key")
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    page.screenshot(path=str(ARTIFACTS / "dashboard-login-refused.png"))
    errors.clear()  # the refused sign-in is a 401 the console reports; nothing after it may fail
    page.fill("#key", "sk-master")
    page.click("button[type=submit]")
    page.wait_for_url(gw.url("/ui"))
    page.wait_for_selector("body[data-loaded=true]")

    raw = gw.openai(api_key="sk-master").chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    row = page.wait_for_selector(f'tr[data-request-id="{request_id}"]', timeout=20_000)
    assert "smart" in row.inner_text() and "200" in row.inner_text()
    page.wait_for_function("Number(document.querySelector('#chart-rate').dataset.points) > 0", timeout=20_000)
    assert page.locator("#chart-rate svg path.series").count() >= 1
    assert page.locator("#chart-latency svg path.series").count() == 2
    assert page.inner_text("#t-requests") == "1"

    row.click()
    attempts = page.wait_for_selector("tr.attempts")
    assert "oai/gpt-4o" in attempts.inner_text()
    deployments = page.inner_text("#deployments tbody")
    assert "oai/gpt-4o" in deployments and "closed" in deployments
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    assert not errors, errors
    page.close()
