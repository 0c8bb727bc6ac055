"""The catalog of named hosts: every entry is usable data, and its quirks are applied on the wire."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.config import ProviderConfig
from sluicegate.providers.registry import adapters, catalog, resolve

ISSUE_HOSTS = (
    "groq", "together", "fireworks", "deepseek", "openrouter", "xai", "perplexity", "cerebras",
    "sambanova", "nebius", "deepinfra", "ollama", "vllm", "lmstudio", "llamacpp",
)  # fmt: skip


def test_every_entry_names_a_real_adapter_and_a_url_or_its_own_adapter() -> None:
    known = adapters()
    for name, entry in catalog().items():
        assert entry.adapter in known, name
        if entry.adapter == "openai":
            assert entry.base_url and entry.base_url.startswith(("https://", "http://127.0.0.1")), name
            assert entry.no_auth or entry.key_env, name


@pytest.mark.parametrize("host", ISSUE_HOSTS)
def test_hosts_from_the_issue_are_one_entry_each(host: str) -> None:
    adapter, config, entry = resolve(
        ProviderConfig(type=host), environ={entry_key(host): "k"} if entry_key(host) else {}
    )
    assert adapter is adapters()["openai"] and config.base_url == entry.base_url
    assert config.api_key == ("k" if entry.key_env else None)


def entry_key(host: str) -> str | None:
    return catalog()[host].key_env


def test_drop_params_and_no_auth_on_the_wire(gateway_factory: Any, fake_openai: Any) -> None:
    base = fake_openai.base_url + "/v1"
    gw = gateway_factory(
        {
            "providers": {
                "cb": {"type": "cerebras", "api_key": "csk", "base_url": base},
                "local": {"type": "ollama", "base_url": base},
            },
            "models": [
                {"name": "fast", "deployments": [{"provider": "cb", "model": "llama3.1-8b"}]},
                {"name": "local", "deployments": [{"provider": "local", "model": "llama3"}]},
            ],
        }
    )
    messages = [{"role": "user", "content": "hi"}]
    gw.openai().chat.completions.create(model="fast", messages=messages, presence_penalty=0.5, temperature=0.2)
    sent = fake_openai.requests[-1]
    assert "presence_penalty" not in sent.body and sent.body["temperature"] == 0.2
    assert sent.headers["authorization"] == "Bearer csk"
    gw.openai().chat.completions.create(model="local", messages=messages)
    assert "authorization" not in fake_openai.requests[-1].headers


def test_mistral_native_names_and_extras(gateway_factory: Any, fake_openai: Any) -> None:
    gw = gateway_factory(
        {
            "providers": {"m": {"type": "mistral", "api_key": "mk", "base_url": fake_openai.base_url + "/v1"}},
            "models": [{"name": "small", "deployments": [{"provider": "m", "model": "mistral-small-latest"}]}],
        }
    )
    gw.openai().chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "hi"}],
        seed=42,
        user="u-7",
        parallel_tool_calls=False,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        extra_body={"safe_prompt": True},
    )
    sent = fake_openai.requests[-1].body
    assert sent["random_seed"] == 42 and "seed" not in sent
    assert "user" not in sent
    assert sent["safe_prompt"] is True and sent["parallel_tool_calls"] is False
