"""The admin API contract: keys, teams and spend reports over HTTP, behind the master key only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.governance_support import MASTER, Admin, chat, chat_config

ISSUE_BODY = {
    "name": "ci-bot",
    "team": "search",
    "models": ["smart"],
    "rpm_limit": 60,
    "tpm_limit": 100000,
    "max_parallel": 5,
    "budget": {"amount_usd": 10, "period": "monthly", "enforce": "hard"},
    "expires_at": "2027-01-01T00:00:00Z",
    "metadata": {"owner": "platform"},
}


@pytest.fixture
def gw(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> Any:
    return gateway_factory(chat_config(fake_openai, database_url=f"sqlite:///{tmp_path}/gov.db"))


def test_create_key_with_the_issue_body_answers_201_with_the_clear_key_once(gw: Any, tmp_path: Path) -> None:
    admin = Admin(gw.base_url)
    response = admin.request("POST", "/admin/keys", json=ISSUE_BODY)
    assert response.status_code == 201
    created = response.json()
    assert created["key"].startswith("sk-sg-") and len(created["key"]) > 40
    assert created["id"].startswith("key_")
    assert {k: created[k] for k in ("name", "team", "models", "rpm_limit", "tpm_limit", "max_parallel")} == {
        "name": "ci-bot",
        "team": "search",
        "models": ["smart"],
        "rpm_limit": 60,
        "tpm_limit": 100000,
        "max_parallel": 5,
    }
    assert created["budget"] == {"amount_usd": 10.0, "period": "monthly", "enforce": "hard"}
    assert created["expires_at"] == "2027-01-01T00:00:00Z"
    assert created["metadata"] == {"owner": "platform"}
    assert response.headers["cache-control"] == "no-store"
    # never shown again, and never stored in clear
    fetched = admin.request("GET", f"/admin/keys/{created['id']}").json()
    assert "key" not in fetched and fetched["key_hint"] == "sk-sg-..." + created["key"][-4:]
    listed = admin.request("GET", "/admin/keys").json()
    assert [entry["id"] for entry in listed["data"]] == [created["id"]] and "key" not in listed["data"][0]
    dump = "\n".join(sqlite3.connect(tmp_path / "gov.db").iterdump())
    assert created["key"] not in dump and created["key"][6:] not in dump


def test_only_name_is_required(gw: Any) -> None:
    admin = Admin(gw.base_url)
    created = admin.create_key(name="minimal")
    assert created["team"] is None and created["models"] is None and created["budget"] is None
    missing = admin.request("POST", "/admin/keys", json={"team": "x"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_body" and "name" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a", "rpm_limit": 0}, "rpm_limit"),
        ({"name": "a", "rpm_limit": "ten"}, "rpm_limit"),
        ({"name": "a", "budget": {"amount_usd": 5, "period": "hourly"}}, "budget.period"),
        ({"name": "a", "budget": {"amount_usd": 5, "enforce": "maybe"}}, "budget.enforce"),
        ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "a", "colour": "red"}, "colour"),
        ({"name": "a", "team": "no spaces please"}, "team"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(gw: Any, body: dict[str, Any], field: str) -> None:
    response = Admin(gw.base_url).request("POST", "/admin/keys", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and field.split(".")[-1] in error["message"]


def test_patch_changes_given_fields_and_null_clears(gw: Any) -> None:
    admin = Admin(gw.base_url)
    created = admin.create_key(**ISSUE_BODY)
    response = admin.request("PATCH", f"/admin/keys/{created['id']}", json={"rpm_limit": 5, "models": None})
    assert response.status_code == 200
    updated = response.json()
    assert updated["rpm_limit"] == 5 and updated["models"] is None
    assert updated["tpm_limit"] == 100000 and updated["team"] == "search"
    again = admin.request("GET", f"/admin/keys/{created['id']}").json()
    assert again["rpm_limit"] == 5 and again["models"] is None
    assert again["spend"]["spent_usd"] == 0.0 and again["spend"]["resets_at"].endswith("T00:00:00Z")


def test_revoke_and_rotate(gw: Any) -> None:
    admin = Admin(gw.base_url)
    created = admin.create_key(name="rotating")
    assert chat(gw.base_url, created["key"]).status_code == 200
    rotated = admin.request("POST", f"/admin/keys/{created['id']}/rotate").json()
    assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
    assert chat(gw.base_url, created["key"]).status_code == 401
    assert chat(gw.base_url, rotated["key"]).status_code == 200
    revoked = admin.request("DELETE", f"/admin/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    refused = chat(gw.base_url, rotated["key"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
    assert admin.request("POST", f"/admin/keys/{created['id']}/rotate").status_code == 409


def test_unknown_ids_and_paths_are_404(gw: Any) -> None:
    admin = Admin(gw.base_url)
    assert admin.request("GET", "/admin/keys/key_nope").json()["error"]["code"] == "key_not_found"
    assert admin.request("DELETE", "/admin/keys/key_nope").status_code == 404
    assert admin.request("POST", "/admin/keys/key_nope/spin").status_code == 404
    assert admin.request("GET", "/admin/teams/nope").status_code == 404
    assert admin.request("PUT", "/admin/keys").status_code == 405


def test_teams_crud_and_keys_by_team(gw: Any) -> None:
    admin = Admin(gw.base_url)
    team = admin.create_team(name="search", rpm_limit=100, budget={"amount_usd": 50, "period": "weekly"})
    assert team["id"] == "search" and team["budget"]["enforce"] == "hard"
    assert admin.request("POST", "/admin/teams", json={"name": "search"}).status_code == 409
    patched = admin.request("PATCH", "/admin/teams/search", json={"tpm_limit": 5000}).json()
    assert patched["tpm_limit"] == 5000 and patched["rpm_limit"] == 100
    assert [t["id"] for t in admin.request("GET", "/admin/teams").json()["data"]] == ["search"]
    mine = admin.create_key(name="a", team="search")
    admin.create_key(name="b", team="other")
    assert [k["id"] for k in admin.request("GET", "/admin/keys", params={"team": "search"}).json()["data"]] == [
        mine["id"]
    ]
    assert admin.request("GET", "/admin/teams/search").json()["spend"]["spent_usd"] == 0.0
    assert admin.request("DELETE", "/admin/teams/search").json()["deleted"] is True
    assert admin.request("GET", "/admin/teams/search").status_code == 404


def test_spend_report_groups_by_key_team_model_and_day(gw: Any) -> None:
    admin = Admin(gw.base_url)
    a = admin.create_key(name="alpha", team="search")
    b = admin.create_key(name="beta", team="ads")
    for _ in range(2):
        assert chat(gw.base_url, a["key"]).status_code == 200
    assert chat(gw.base_url, b["key"], model="cheap").status_code == 200
    # the fake reports 11 prompt and 7 completion tokens; gpt-4o is $2.50 / $10 per 1M, gpt-4o-mini $0.15 / $0.60
    smart, cheap = (11 * 2.50 + 7 * 10.00) / 1e6, (11 * 0.15 + 7 * 0.60) / 1e6
    by_key = admin.spend("key")
    rows = {row["key"]: row for row in by_key["data"]}
    assert rows[a["id"]]["requests"] == 2 and rows[a["id"]]["name"] == "alpha"
    assert rows[a["id"]]["cost_usd"] == pytest.approx(2 * smart)
    assert rows[b["id"]]["prompt_tokens"] == 11 and rows[b["id"]]["completion_tokens"] == 7
    assert by_key["total_cost_usd"] == pytest.approx(2 * smart + cheap)
    assert {row["team"]: row["requests"] for row in admin.spend("team")["data"]} == {"search": 2, "ads": 1}
    assert {row["model"]: row["requests"] for row in admin.spend("model")["data"]} == {
        "up/gpt-4o": 2,
        "up/gpt-4o-mini": 1,
    }
    days = admin.spend("day")["data"]
    assert len(days) == 1 and days[0]["requests"] == 3
    assert admin.spend("key", to="2001-01-01")["requests"] == 0
    assert admin.spend("day", **{"from": days[0]["day"], "to": days[0]["day"]})["requests"] == 3
    bad = admin.request("GET", "/admin/spend", params={"group_by": "colour"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


def test_admin_api_refuses_virtual_keys_and_missing_keys(gw: Any) -> None:
    admin = Admin(gw.base_url)
    key = admin.create_key(name="app")["key"]
    for path in ("/admin/keys", "/admin/teams", "/admin/spend"):
        refused = Admin(gw.base_url, key).request("GET", path)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admin_only"
        assert key not in refused.text
    assert Admin(gw.base_url, key).request("POST", "/admin/keys", json={"name": "escalate"}).status_code == 403
    assert Admin(gw.base_url, "wrong").request("GET", "/admin/keys").status_code == 401
    assert len(admin.request("GET", "/admin/keys").json()["data"]) == 1


def test_admin_api_is_off_when_the_gateway_is_open(gateway_factory: Any, fake_openai: Any, tmp_path: Path) -> None:
    gw = gateway_factory(chat_config(fake_openai, master_key=None, database_url=f"sqlite:///{tmp_path}/open.db"))
    response = Admin(gw.base_url, "anything").request("POST", "/admin/keys", json={"name": "x"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_disabled"


def test_master_key_from_the_environment(
    gateway_factory: Any, fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICEGATE_MASTER_KEY", "sk-from-env")
    gw = gateway_factory(chat_config(fake_openai, master_key=None, database_url=f"sqlite:///{tmp_path}/env.db"))
    assert not gw.gateway.is_open
    assert chat(gw.base_url, None).status_code == 401
    assert Admin(gw.base_url, "sk-from-env").create_key(name="x")["key"].startswith("sk-sg-")
    assert Admin(gw.base_url, MASTER).request("GET", "/admin/keys").status_code == 401
