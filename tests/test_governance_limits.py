"""Rate limits (RPM, TPM), concurrency and budgets per key, team and alias: in-process and in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.governance.budgets import BudgetSpec, iso, period_bounds
from sluicegate.governance.limits import (
    _ACQUIRE,
    BUDGET,
    PARALLEL,
    RPM,
    TPM,
    Check,
    LimitExceeded,
    LocalLimiter,
)
from tests.fakes.server import Fault
from tests.governance_support import MASTER, Admin, chat, chat_config
from tests.services import redis_url

#: the fake's usage (11 prompt + 7 completion tokens) at gpt-4o's $2.50 / $10 per 1M tokens
SMART_COST = (11 * 2.50 + 7 * 10.00) / 1e6


async def burst(base_url: str, key: str | None, count: int, model: str = "smart") -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(count))))


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/limits.db"


# --- in-process ------------------------------------------------------------------------------------


def test_rpm_cuts_a_burst_at_exactly_the_limit(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    key = Admin(gw.base_url).create_key(name="bursty", rpm_limit=10)["key"]
    responses = asyncio.run(burst(gw.base_url, key, 30))
    assert statuses(responses) == {200: 10, 429: 20}
    assert len(fake_openai.requests) == 10
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "key 'bursty': 10 requests per minute" in error["message"] and "Retry in" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    accepted = [r for r in responses if r.status_code == 200]
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in accepted) == list(range(10))
    assert all(r.headers["x-ratelimit-reset-requests"].endswith("s") for r in accepted)


def test_tpm_counts_the_prompt_first_and_the_real_usage_after(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    assert gw.gateway.admission.tokenizer.exact  # the packaged cl100k_base, no download
    key = Admin(gw.base_url).create_key(name="tokens", tpm_limit=50)["key"]
    # "Say hello" is 2 tokens + 3 for the message + 3 for the answer = 8 reserved before the call; the
    # provider then reports 18 (11 + 7), which replaces the estimate: 8 -> 18 -> 36 -> 54 > 50 - 8
    results = [chat(gw.base_url, key) for _ in range(4)]
    assert [r.status_code for r in results] == [200, 200, 200, 429]
    assert [r.headers.get("x-ratelimit-remaining-tokens") for r in results[:3]] == ["42", "24", "6"]
    assert results[0].headers["x-ratelimit-limit-tokens"] == "50"
    error = results[3].json()["error"]
    assert error["code"] == "tokens_rate_limit_exceeded"
    assert "50 tokens per minute (54 used, this request needs ~8)" in error["message"]
    too_big = chat(gw.base_url, key, messages=[{"role": "user", "content": "word " * 200}])
    assert too_big.status_code == 429 and "this request alone needs ~" in too_big.json()["error"]["message"]


def test_max_parallel_holds_slots_until_the_answer_is_done(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    key = Admin(gw.base_url).create_key(name="parallel", max_parallel=2)["key"]
    fake_openai.faults.extend(Fault(delay=0.5) for _ in range(5))
    responses = asyncio.run(burst(gw.base_url, key, 5))
    assert statuses(responses) == {200: 2, 429: 3}
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["code"] == "parallel_limit_exceeded" and "at most 2 at a time" in refused["message"]
    fake_openai.faults.clear()
    assert statuses(asyncio.run(burst(gw.base_url, key, 2))) == {200: 2}  # the slots came back


def test_a_cancelled_stream_gives_its_slot_back(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    key = Admin(gw.base_url).create_key(name="streamer", max_parallel=1)["key"]
    fake_openai.faults.append(Fault(pace=0.2))
    client = gw.openai(api_key=key)
    stream = client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}], stream=True)
    next(iter(stream))
    assert chat(gw.base_url, key).status_code == 429  # the open stream holds the only slot
    stream.close()
    for _ in range(50):  # the gateway notices the disconnect on its next write
        response = chat(gw.base_url, key)
        if response.status_code == 200:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert response.status_code == 200


def test_alias_limits_apply_to_every_caller(gateway_factory: Any, fake_openai: Any) -> None:
    config = chat_config(fake_openai, master_key=None)
    config["models"][0]["limits"] = {"rpm": 3}
    gw = gateway_factory(config)
    assert [chat(gw.base_url, None).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "alias 'smart'" in chat(gw.base_url, None).json()["error"]["message"]
    assert chat(gw.base_url, None, model="cheap").status_code == 200


def test_team_limits_are_shared_by_its_keys(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    admin = Admin(gw.base_url)
    admin.create_team(name="search", rpm_limit=3)
    first, second = (admin.create_key(name=n, team="search", rpm_limit=100)["key"] for n in ("a", "b"))
    codes = [chat(gw.base_url, key).status_code for key in (first, second, first, second)]
    assert codes == [200, 200, 200, 429]
    assert "team 'search'" in chat(gw.base_url, first).json()["error"]["message"]
    assert chat(gw.base_url, admin.create_key(name="loner")["key"]).status_code == 200


def test_a_hard_budget_refuses_with_the_limit_and_when_it_resets(
    gateway_factory: Any, fake_openai: Any, db: str
) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    admin = Admin(gw.base_url)
    created = admin.create_key(name="thrifty", budget={"amount_usd": 0.0001, "period": "daily"})
    # spend before each request: 0, then 0.0000975 (< 0.0001), then 0.000195 (over)
    results = [chat(gw.base_url, created["key"]) for _ in range(3)]
    assert [r.status_code for r in results] == [200, 200, 429]
    assert len(fake_openai.requests) == 2
    error = results[2].json()["error"]
    reset = iso(period_bounds("daily", time.time())[1])
    assert error["code"] == "budget_exceeded"
    assert error["message"] == (
        f"Budget exceeded for key 'thrifty': $0.000195 spent of its daily budget of $0.0001 (hard limit). "
        f"The budget resets at {reset}."
    )
    assert int(results[2].headers["retry-after"]) > 0
    # a higher budget takes effect at once on this replica
    admin.request("PATCH", f"/admin/keys/{created['id']}", json={"budget": {"amount_usd": 1, "period": "daily"}})
    assert chat(gw.base_url, created["key"]).status_code == 200
    assert admin.request("GET", f"/admin/keys/{created['id']}").json()["spend"]["spent_usd"] == pytest.approx(
        3 * SMART_COST
    )


def test_a_soft_budget_warns_but_lets_requests_through(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    gw = gateway_factory(chat_config(fake_openai, database_url=db))
    admin = Admin(gw.base_url)
    admin.create_team(name="research", budget={"amount_usd": 0.00005, "enforce": "soft"})
    key = admin.create_key(name="soft", team="research")["key"]
    first, second = chat(gw.base_url, key), chat(gw.base_url, key)
    assert first.status_code == second.status_code == 200
    assert "x-sluicegate-budget-warning" not in first.headers
    assert second.headers["x-sluicegate-budget-warning"] == "team 'research' is over its monthly budget"


def test_budgets_start_from_the_spend_already_recorded(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    first = gateway_factory(chat_config(fake_openai, database_url=db))
    created = Admin(first.base_url).create_key(name="restarted", budget={"amount_usd": 0.0001})
    assert chat(first.base_url, created["key"]).status_code == 200
    assert chat(first.base_url, created["key"]).status_code == 200
    Admin(first.base_url).request("GET", f"/admin/keys/{created['id']}")  # writes the waiting spend records
    # a new replica (or the same one restarted) counts from the database, not from zero
    second = gateway_factory(chat_config(fake_openai, database_url=db))
    assert chat(second.base_url, created["key"]).status_code == 429


def test_local_window_never_holds_more_than_the_limit_in_any_60_seconds() -> None:
    limiter = LocalLimiter()
    check = Check("key:k:rpm", RPM, 3, "key 'k'")
    for _ in range(3):
        limiter.acquire_now([check], 0, "l", now=1000.9)
    for moment in (1001.0, 1059.9, 1060.99):
        with pytest.raises(LimitExceeded):
            limiter.acquire_now([check], 0, "l", now=moment)
    limiter.acquire_now([check], 0, "l", now=1061.0)  # 60.1 s after the first three


def test_a_refusal_by_one_limit_counts_against_none() -> None:
    limiter = LocalLimiter()
    key = Check("key:k:rpm", RPM, 10, "key 'k'")
    team = Check("team:t:rpm", RPM, 1, "team 't'")
    limiter.acquire_now([key, team], 0, "l", now=10.0)
    for _ in range(5):
        with pytest.raises(LimitExceeded):
            limiter.acquire_now([key, team], 0, "l", now=10.0)
    grant = limiter.acquire_now([key], 0, "l", now=10.0)
    assert grant.requests is not None and grant.requests.remaining == 8  # only the admitted request counted


async def test_settling_releases_slots_reconciles_tokens_and_adds_spend() -> None:
    limiter = LocalLimiter()
    budget = Check("budget:key:k:0", BUDGET, 1.0, "key 'k'", 2e9, BudgetSpec(1.0))
    checks = [Check("k:tpm", TPM, 100, "key 'k'"), Check("k:par", PARALLEL, 1, "key 'k'"), budget]
    grant = limiter.acquire_now(checks, 40, "l", now=5.0)
    with pytest.raises(LimitExceeded):
        limiter.acquire_now(checks, 1, "l", now=5.0)  # the slot is taken
    await grant.settle(token_delta=50, cost=0.75)  # 40 reserved, 90 used
    again = limiter.acquire_now(checks, 10, "l", now=6.0)
    assert again.tokens_quota is not None and again.tokens_quota.remaining == 0
    await again.settle(token_delta=-10, cost=0.5)
    with pytest.raises(LimitExceeded) as refused:
        limiter.acquire_now(checks, 1, "l", now=7.0)
    assert refused.value.code == "budget_exceeded" and limiter.spent(budget.name) == 1.25


# --- Redis -----------------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = redis_url()
    prefix = f"sluicegate:test:{uuid.uuid4().hex[:12]}:"
    yield url, prefix
    import redis

    client = redis.Redis.from_url(url)
    for name in client.scan_iter(prefix + "*"):
        client.delete(name)
    client.close()


@pytest.mark.service
def test_redis_rpm_cuts_a_burst_at_exactly_the_limit(
    gateway_factory: Any, fake_openai: Any, db: str, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    gw = gateway_factory(chat_config(fake_openai, database_url=db, redis_url=url, governance={"redis_prefix": prefix}))
    created = Admin(gw.base_url).create_key(name="shared", rpm_limit=10, tpm_limit=10_000, max_parallel=50)
    responses = asyncio.run(burst(gw.base_url, created["key"], 30))
    assert statuses(responses) == {200: 10, 429: 20}
    import redis

    client = redis.Redis.from_url(url)
    for kind, counted in (("rpm", 10), ("tpm", 10 * 18)):
        window = client.hgetall(f"{prefix}key:{created['id']}:{kind}")
        seconds = {field: int(value) for field, value in window.items() if field not in (b"t", b"o")}
        assert sum(seconds.values()) == counted
        assert int(window[b"t"]) == counted  # the running total the script reads instead of every second
    assert client.zcard(f"{prefix}key:{created['id']}:parallel") == 0  # every slot released
    client.close()


@pytest.mark.service
def test_redis_budget_counter_is_seeded_and_charged(
    gateway_factory: Any, fake_openai: Any, db: str, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    gw = gateway_factory(chat_config(fake_openai, database_url=db, redis_url=url, governance={"redis_prefix": prefix}))
    created = Admin(gw.base_url).create_key(name="budgeted", budget={"amount_usd": 0.0001, "period": "weekly"})
    assert [chat(gw.base_url, created["key"]).status_code for _ in range(3)] == [200, 200, 429]
    import redis

    client = redis.Redis.from_url(url)
    start, end = period_bounds("weekly", time.time())
    counter = f"{prefix}budget:key:{created['id']}:{int(start)}"
    assert float(client.get(counter) or 0) == pytest.approx(2 * SMART_COST)
    assert 0 < client.ttl(counter) <= end - start + 86400 + 5
    client.close()


def _redis_second(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def _sleep_until(client: Any, second: int) -> None:
    time.sleep(max(second - _redis_second(client) + 0.05, 0))


@pytest.mark.service
def test_redis_window_drops_seconds_as_they_leave_it(redis_prefix: tuple[str, str]) -> None:
    """The acquire script with a one-second window, so that seconds leave it within the test: the running
    total follows them out, the hash keeps no stale second, and a long-idle window starts afresh."""
    import redis

    url, prefix = redis_prefix
    client = redis.Redis.from_url(url)
    acquire = client.register_script(_ACQUIRE)
    key = prefix + "window"

    def ask() -> list[bytes]:
        return list(acquire(keys=[key], args=[1, "lease", 900, 1, RPM, "3.0"]))

    start = int(_redis_second(client)) + 1
    _sleep_until(client, start)
    assert [ask()[0] for _ in range(4)] == [1, 1, 1, 0]
    refused = ask()
    assert float(refused[3]) <= 2.0  # frees when its second leaves the window: at most 1 s + the rest of this one
    _sleep_until(client, start + 2)
    admitted = ask()
    assert admitted[0] == 1 and int(admitted[1]) == start + 2 and admitted[2] == b"0"
    window = client.hgetall(key)
    assert str(start).encode() not in window and window[b"t"] == b"1" and int(window[b"o"]) == start + 2
    _sleep_until(client, start + 6)  # everything held is far out of the window: the hash is dropped whole
    assert ask()[2] == b"0" and client.hget(key, "t") == b"1" and client.hlen(key) == 3
    client.close()


@pytest.mark.parametrize(("mode", "expected"), [("local", [200, 200, 429]), ("open", [200, 200, 200])])
def test_unreachable_redis_falls_back_as_configured(
    gateway_factory: Any, fake_openai: Any, db: str, mode: str, expected: list[int]
) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    governance = {"redis_failure": mode, "redis_timeout": 0.2}
    gw = gateway_factory(chat_config(fake_openai, database_url=db, redis_url=dead, governance=governance))
    key = Admin(gw.base_url).create_key(name="fallback", rpm_limit=2)["key"]
    assert [chat(gw.base_url, key).status_code for _ in range(3)] == expected


def test_unreachable_redis_refuses_when_closed(gateway_factory: Any, fake_openai: Any, db: str) -> None:
    governance = {"redis_failure": "closed", "redis_timeout": 0.2}
    gw = gateway_factory(
        chat_config(fake_openai, database_url=db, redis_url="redis://127.0.0.1:1/0", governance=governance)
    )
    key = Admin(gw.base_url).create_key(name="strict", rpm_limit=2)["key"]
    refused = chat(gw.base_url, key)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "rate_limiter_unavailable"
    assert fake_openai.requests == []
    # requests no limit concerns are not affected
    assert chat(gw.base_url, MASTER).status_code == 200


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"governance": {"redis_failure": "sometimes"}}, "governance.redis_failure"),
        ({"governance": {"spend_batch_size": 0}}, "governance.spend_batch_size"),
        ({"governance": {"prices": {"up/x": {"input": -1}}}}, "governance.prices"),
        ({"database_url": "mysql://db/x"}, "database_url"),
    ],
)
def test_config_mistakes_are_reported_at_start_up(section: dict[str, Any], where: str) -> None:
    from sluicegate.config import ConfigError, config_from_dict
    from sluicegate.errors import ConfigurationError
    from sluicegate.gateway import Gateway

    with pytest.raises((ConfigError, ConfigurationError)) as error:
        Gateway(config_from_dict({"master_key": MASTER, **section}))
    assert where in str(error.value)
