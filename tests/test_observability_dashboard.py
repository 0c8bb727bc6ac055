"""The dashboard over HTTP: sign-in, session cookie, JSON endpoints and the files it ships.

The browser itself is driven in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.observability.dashboard.assets import load_assets
from sluicegate.observability.dashboard.session import Sessions

MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(fake: Any, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "master_key": "sk-master",
        "database_url": f"sqlite:///{tmp_path}/gw.db",
        "providers": {"oai": {"type": "openai", "api_key": "sk-upstream", "base_url": fake.base_url + "/v1"}},
        "models": [{"name": "smart", "deployments": [{"provider": "oai", "model": "gpt-4o"}]}],
        "observability": {"log_store": {"flush_interval": 0.05}},
        **extra,
    }


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> Any:
    return gateway_factory(config(fake_openai, tmp_path))


def sign_in(gw: Any, key: str = "sk-master") -> httpx.Client:
    client = httpx.Client(base_url=gw.base_url)
    response = client.post("/ui/login", data={"key": key})
    assert response.status_code == 303 and response.headers["location"] == "/ui"
    return client


def test_the_dashboard_sends_strangers_to_the_login_page(gw: Any) -> None:
    response = httpx.get(gw.url("/ui"))
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    login = httpx.get(gw.url("/ui/login"))
    assert login.status_code == 200 and 'name="key"' in login.text
    assert "default-src 'none'" in login.headers["content-security-policy"]
    assert httpx.get(gw.url("/ui/api/overview")).status_code == 401


def test_a_wrong_key_is_refused_without_a_cookie(gw: Any) -> None:
    response = httpx.post(gw.url("/ui/login"), data={"key": "sk-guess"})
    assert response.status_code == 401
    assert "not the master key" in response.text and "sk-guess" not in response.text
    assert "set-cookie" not in response.headers


def test_signing_in_sets_an_httponly_cookie_that_opens_the_api(gw: Any) -> None:
    client = sign_in(gw)
    cookie = client.cookies.jar
    header = httpx.post(gw.url("/ui/login"), data={"key": "sk-master"}).headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/ui" in header
    assert "sk-master" not in header
    assert len(list(cookie)) == 1
    page = client.get("/ui")
    assert page.status_code == 200 and "/ui/static/app.js" in page.text
    overview = client.get("/ui/api/overview", params={"range": "1h", "group": "alias"}).json()
    assert overview["log_store"] is True and len(overview["timestamps"]) == 60
    meta = client.get("/ui/api/meta").json()
    assert meta["aliases"] == ["smart"] and meta["open"] is False
    out = client.post("/ui/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    client.close()


def test_forged_or_expired_cookies_are_refused() -> None:
    sessions = Sessions("sk-master", lifetime=60)
    token = sessions.issue(now=1000)
    assert sessions.valid(token, now=1030)
    assert not sessions.valid(token, now=1061)
    expires, _, signature = token.partition(".")
    assert not sessions.valid(f"{int(expires) + 3600}.{signature}", now=1030)
    assert not Sessions("another-master-key").valid(token, now=1030)
    assert not sessions.valid("garbage", now=1030) and not sessions.valid(None)


def test_the_master_key_as_a_bearer_token_also_works_for_scripts(gw: Any) -> None:
    headers = {"authorization": "Bearer sk-master"}
    assert httpx.get(gw.url("/ui/api/deployments"), headers=headers).status_code == 200
    assert httpx.get(gw.url("/ui/api/deployments"), headers={"authorization": "Bearer nope"}).status_code == 401


def test_recent_requests_series_and_deployments_show_a_request_just_made(gw: Any) -> None:
    raw = gw.openai(api_key="sk-master").chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    client = sign_in(gw)
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        rows = [r for r in client.get("/ui/api/requests").json()["data"] if r["request_id"] == request_id]
        time.sleep(0.05)
    assert rows and rows[0]["deployment"] == "oai/gpt-4o" and rows[0]["attempts"][0]["status"] == 200
    overview = client.get("/ui/api/overview", params={"range": "15m", "group": "provider"}).json()
    assert overview["summary"]["requests"] == 1 and overview["groups"][0]["name"] == "oai"
    deployments = client.get("/ui/api/deployments").json()["data"]
    [row] = [d for d in deployments if d["id"] == "oai/gpt-4o"]
    assert row["state"] == "closed" and row["aliases"] == ["smart"] and row["window"]["requests"] == 1
    one = client.get("/ui/api/request", params={"id": request_id}).json()
    assert one["request_id"] == request_id
    assert client.get("/ui/api/request", params={"id": "missing"}).status_code == 404
    client.close()


def test_keys_come_from_the_governance_store(gw: Any) -> None:
    headers = {"authorization": "Bearer sk-master"}
    created = httpx.post(gw.url("/admin/keys"), json={"name": "ci-bot", "team": "search"}, headers=headers)
    if created.status_code == 404:
        pytest.skip("the governance admin API is not in this build")
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    gw.openai(api_key=secret).chat.completions.create(model="smart", messages=MESSAGES)
    deadline = time.monotonic() + 10
    key: dict[str, Any] = {}
    while not key.get("usage") and time.monotonic() < deadline:
        keys = httpx.get(gw.url("/ui/api/keys"), headers=headers).json()
        [key] = [k for k in keys["data"] if k["name"] == "ci-bot"]
        time.sleep(0.05)
    assert keys["key_store"] is True and keys["notice"] is None
    assert key["team"] == "search" and "key_hash" not in key and secret not in str(keys)
    assert key["usage"]["requests"] == 1 and key["usage"]["input_tokens"] == 11


def test_without_a_master_key_the_dashboard_is_open(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    cfg = config(fake_openai, tmp_path)
    del cfg["master_key"]
    gw = gateway_factory(cfg)
    assert httpx.get(gw.url("/ui")).status_code == 200
    assert httpx.get(gw.url("/ui/login")).headers["location"] == "/ui"
    assert httpx.get(gw.url("/ui/api/meta")).json()["open"] is True


def test_without_a_log_store_the_page_says_so(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    cfg = config(fake_openai, tmp_path)
    cfg["observability"] = {"log_store": {"enabled": False}}
    gw = gateway_factory(cfg)
    overview = httpx.get(gw.url("/ui/api/overview"), headers={"authorization": "Bearer sk-master"}).json()
    assert overview["log_store"] is False and "database_url" in overview["notice"]


def test_the_dashboard_can_be_turned_off(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    gw = gateway_factory(config(fake_openai, tmp_path, observability={"dashboard": False}))
    assert httpx.get(gw.url("/ui")).status_code == 404


def test_assets_ship_in_the_package_and_fetch_nothing_from_elsewhere(gw: Any) -> None:
    assets = load_assets()
    assert {"index.html", "login.html", "app.js", "charts.js", "app.css"} <= set(assets)
    for name, asset in assets.items():
        text = asset.body.decode()
        # the only absolute URL allowed is the SVG namespace, which is a name, not a fetch
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (name, urls)
        assert "<script>" not in text and "onclick=" not in text, name  # nothing inline: CSP is 'self' only
    script = httpx.get(gw.url("/ui/static/app.js"))
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(gw.url("/ui/static/app.js"), headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304
