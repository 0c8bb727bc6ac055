"""Reasoning across dialects and providers: `reasoning_effort` <-> Anthropic `thinking` budgets <-> Gemini
`thinkingConfig`, and thinking tokens counted in usage (Usage.reasoning_tokens) whatever the dialect."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from sluicegate.ingress.anthropic_messages import chat_request as anthropic_ingress
from sluicegate.ingress.anthropic_messages import effort_for_budget
from sluicegate.providers.anthropic import chat as anthropic_chat
from sluicegate.providers.gemini import chat as gemini_chat
from tests.fakes.gemini import CANDIDATES_TOKENS, THOUGHTS_TOKENS

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize(
    ("effort", "config"),
    [
        ("none", {"thinkingBudget": 0, "includeThoughts": False}),
        ("minimal", {"thinkingBudget": 512, "includeThoughts": True}),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", {"thinkingBudget": 4096, "includeThoughts": True}),
        ("high", {"thinkingBudget": 16384, "includeThoughts": True}),
    ],
)
def test_gemini_thinking_config(effort: str, config: dict[str, Any]) -> None:
    body = gemini_chat.chat_request({"messages": HELLO, "reasoning_effort": effort})
    assert body["generationConfig"]["thinkingConfig"] == config


def test_gemini_default_thinking_is_left_alone() -> None:
    assert "generationConfig" not in gemini_chat.chat_request({"messages": HELLO})


def test_levels_agree_between_providers_and_invert_exactly() -> None:
    for level, budget in anthropic_chat.THINKING_BUDGETS.items():
        assert gemini_chat.THINKING_BUDGETS[level] == budget
        assert effort_for_budget(budget) == level


@pytest.mark.parametrize("budget", [1024, 2000, 4096, 10000, 16384, 32000])
def test_anthropic_thinking_survives_the_round_trip_within_max_tokens(budget: int) -> None:
    max_tokens = budget + 1
    internal = anthropic_ingress(
        {
            "model": "m",
            "max_tokens": max_tokens,
            "messages": HELLO,
            "thinking": {"type": "enabled", "budget_tokens": budget},
        }
    )
    upstream = anthropic_chat.chat_request(internal, "claude")
    # Rounded down to a level: never more thinking than asked for, so budget < max_tokens still holds.
    assert upstream["thinking"]["budget_tokens"] <= budget < upstream["max_tokens"] == max_tokens


def test_anthropic_usage_reads_thinking_tokens() -> None:
    usage = anthropic_chat.usage_from_anthropic(
        {"input_tokens": 5, "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}}
    )
    assert (usage.completion_tokens, usage.reasoning_tokens) == (40, 30)


@pytest.fixture
def via_gemini(gateway_factory: Any, fake_gemini: Any) -> Any:
    return gateway_factory(
        {
            "providers": {"gem": {"type": "gemini", "api_key": "g", "base_url": fake_gemini.base_url}},
            "models": [{"name": "thinker", "deployments": [{"provider": "gem", "model": "gemini-2.5-pro"}]}],
        }
    )


def test_thinking_tokens_reach_every_dialect(via_gemini: Any, fake_gemini: Any) -> None:
    chat = via_gemini.openai().chat.completions.create(model="thinker", messages=HELLO, reasoning_effort="high")
    assert chat.usage is not None and chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == THOUGHTS_TOKENS
    assert chat.usage.completion_tokens == CANDIDATES_TOKENS + THOUGHTS_TOKENS
    assert fake_gemini.requests[-1].body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 16384

    response = via_gemini.openai().responses.create(model="thinker", input="Say hello", reasoning={"effort": "low"})
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == THOUGHTS_TOKENS
    assert fake_gemini.requests[-1].body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024

    sdk = anthropic.Anthropic(base_url=via_gemini.base_url, api_key="k", max_retries=0)
    with sdk.messages.stream(
        model="thinker", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 16384}, messages=HELLO
    ) as stream:
        final = stream.get_final_message()
    assert (
        final.usage.output_tokens_details is not None
        and final.usage.output_tokens_details.thinking_tokens == THOUGHTS_TOKENS
    )
    assert fake_gemini.requests[-1].body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 16384


def test_anthropic_clients_thinking_reaches_anthropic(gateway_factory: Any, fake_anthropic: Any) -> None:
    gw = gateway_factory(
        {
            "providers": {"claude": {"type": "anthropic", "api_key": "a", "base_url": fake_anthropic.base_url}},
            "models": [{"name": "claude", "deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}],
        }
    )
    sdk = anthropic.Anthropic(base_url=gw.base_url, api_key="k", max_retries=0)
    sdk.messages.create(
        model="claude", max_tokens=8000, thinking={"type": "enabled", "budget_tokens": 5000}, messages=HELLO
    )
    sent = fake_anthropic.requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096} and sent["max_tokens"] == 8000
