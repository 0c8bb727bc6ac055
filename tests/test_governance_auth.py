"""Virtual keys at the door: who may call what, revocation and expiry, and keys never leaking."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import openai
import pytest

from sluicegate.governance.keys import KeyHasher, is_virtual_key, new_key
from tests.governance_support import MASTER, Admin, chat, chat_config


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/auth.db"


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any, db: str) -> Any:
    return gateway_factory(chat_config(fake_openai, database_url=db))


def test_a_virtual_key_calls_through_the_openai_sdk(gw: Any, fake_openai: Any) -> None:
    key = Admin(gw.base_url).create_key(name="sdk", models=["smart"])["key"]
    answer = gw.openai(api_key=key).chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello from fake OpenAI."
    # the client's key is the gateway's business: the provider gets the gateway's own credentials
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-upstream"


def test_a_key_cannot_call_an_alias_it_is_not_allowed(gw: Any, fake_openai: Any) -> None:
    key = Admin(gw.base_url).create_key(name="narrow", models=["cheap"])["key"]
    client = gw.openai(api_key=key)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert "'smart'" in refused.value.message and "cheap" in refused.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}], stream=True).close()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="up/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert fake_openai.requests == []  # the provider was never called
    assert client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}]).choices


def test_a_team_restricts_the_models_of_its_keys(gw: Any, fake_openai: Any) -> None:
    admin = Admin(gw.base_url)
    admin.create_team(name="search", models=["cheap"])
    key = admin.create_key(name="member", team="search")["key"]
    refused = chat(gw.base_url, key, model="smart")
    assert refused.status_code == 403 and "team 'search'" in refused.json()["error"]["message"]
    assert fake_openai.requests == []
    assert chat(gw.base_url, key, model="cheap").status_code == 200


def test_revoked_expired_unknown_and_missing_keys_get_401(gw: Any, fake_openai: Any) -> None:
    admin = Admin(gw.base_url)
    revoked = admin.create_key(name="old")
    admin.request("DELETE", f"/admin/keys/{revoked['id']}")
    expired = admin.create_key(name="past", expires_at="2020-01-01T00:00:00Z")
    cases = {
        revoked["key"]: ("key_revoked", "revoked"),
        expired["key"]: ("key_expired", "expired at 2020-01-01T00:00:00Z"),
        new_key(): ("invalid_api_key", "Invalid API key"),
        "not-a-gateway-key": ("invalid_api_key", "Invalid API key"),
    }
    for key, (code, words) in cases.items():
        response = chat(gw.base_url, key)
        assert response.status_code == 401, key
        error = response.json()["error"]
        assert error["code"] == code and words in error["message"] and error["type"] == "authentication_error"
    missing = chat(gw.base_url, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert fake_openai.requests == []


def test_revocation_is_seen_at_once_here_and_after_the_cache_ttl_elsewhere(
    gateway_factory: Any, fake_openai: Any, db: str
) -> None:
    here = gateway_factory(chat_config(fake_openai, database_url=db, governance={"key_cache_ttl": 3600}))
    other = gateway_factory(chat_config(fake_openai, database_url=db, governance={"key_cache_ttl": 0}))
    created = Admin(here.base_url).create_key(name="shared")
    assert chat(here.base_url, created["key"]).status_code == 200
    assert chat(other.base_url, created["key"]).status_code == 200
    Admin(here.base_url).request("DELETE", f"/admin/keys/{created['id']}")
    # the replica that served the admin call drops its cached entry at once, despite its hour-long TTL
    assert chat(here.base_url, created["key"]).status_code == 401
    # another replica reads the key again once its cache entry expires (immediately with a TTL of 0)
    assert chat(other.base_url, created["key"]).status_code == 401


def test_the_database_is_read_once_per_key_not_per_request(gw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Admin(gw.base_url).create_key(name="busy")["key"]
    store = gw.gateway.auth.directory.store
    lookups: list[str] = []
    original = store.key_by_hash

    async def counted(digest: str) -> Any:
        lookups.append(digest)
        return await original(digest)

    monkeypatch.setattr(store, "key_by_hash", counted)
    made_up = new_key()
    for _ in range(10):
        assert chat(gw.base_url, key).status_code == 200
        assert chat(gw.base_url, made_up).status_code == 401
    # one read each, at most: the valid key may be cached from its creation already, the made-up one once
    assert len(lookups) <= 2 and len(set(lookups)) == len(lookups)


def test_keys_are_compared_in_constant_time(gw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Admin(gw.base_url).create_key(name="timed")["key"]
    compared: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert chat(gw.base_url, MASTER[:-1] + "x").status_code == 401  # same length, last byte differs
    assert (MASTER[:-1] + "x").encode() in [a for a, _ in compared]
    compared.clear()
    assert chat(gw.base_url, "short").status_code == 401  # another length: still no early `==`
    assert b"short" in [a for a, _ in compared]
    compared.clear()
    assert chat(gw.base_url, key).status_code == 200
    digest = KeyHasher().hash(key)
    assert (digest, digest) in compared  # the stored hash, checked again after the indexed lookup


def test_keys_never_appear_in_logs_or_error_messages(
    gw: Any, fake_openai: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = Admin(gw.base_url)
    created = admin.create_key(name="secretive", models=["cheap"], rpm_limit=1)
    key = created["key"]
    made_up = new_key()
    texts = [
        chat(gw.base_url, key, model="cheap").text,
        chat(gw.base_url, key, model="cheap").text,  # over its RPM limit
        chat(gw.base_url, key, model="smart").text,  # not allowed
        chat(gw.base_url, made_up).text,
        Admin(gw.base_url, key).request("GET", "/admin/keys").text,
    ]
    admin.request("DELETE", f"/admin/keys/{created['id']}")
    texts.append(chat(gw.base_url, key, model="cheap").text)
    texts.append(admin.request("GET", f"/admin/keys/{created['id']}").text)
    everything = "\n".join(texts) + caplog.text
    for secret in (key, key[6:], made_up, MASTER):
        assert secret not in everything
    assert "rate_limit_exceeded" in everything and "model_not_allowed" in everything


def test_key_format() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100 and all(is_virtual_key(k) and len(k) == 49 for k in keys)
    hasher = KeyHasher("pepper")
    key = new_key()
    assert hasher.hash(key) != KeyHasher("other").hash(key) != KeyHasher().hash(key)
    assert len(hasher.hash(key)) == 64 and key not in hasher.hash(key)
