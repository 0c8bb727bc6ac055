"""Cost: the price table, the arithmetic for cached / reasoning tokens, and what each request is charged,
checked end to end against sums computed by hand from the table."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.config import config_from_dict
from sluicegate.context import RequestRecord
from sluicegate.governance.pricing import Price, PriceBook, PriceTable, cost, format_cost
from sluicegate.providers.base import ChatResult, Usage
from sluicegate.providers.registry import catalog
from tests.fakes.server import Fault
from tests.governance_support import MASTER, Admin, RichUsageOpenAI

# --- the table -------------------------------------------------------------------------------------

TABLE = PriceTable.load()


def per_million(price: Price | None) -> tuple[float, ...]:
    assert price is not None
    return tuple(round(value * 1e6, 6) for value in (price.input, price.output, price.cached_input, price.cache_write))


def test_the_table_is_dated_and_covers_every_supported_provider() -> None:
    assert TABLE.date == "2025-11-25"
    missing = [name for name in catalog() if not TABLE.covers(name)]
    assert missing == []


@pytest.mark.parametrize(
    ("host", "model", "expected"),
    [
        ("openai", "gpt-4o", (2.50, 10.00, 1.25, 2.50)),
        ("openai", "gpt-4o-2024-11-20", (2.50, 10.00, 1.25, 2.50)),  # a dated snapshot
        ("openai", "gpt-4o-mini-2024-07-18", (0.15, 0.60, 0.075, 0.15)),  # the longest entry wins
        ("azure", "gpt-4.1", (2.00, 8.00, 0.50, 2.00)),  # Azure deployments priced from OpenAI's table
        ("anthropic", "claude-sonnet-4-20250514", (3.00, 15.00, 0.30, 3.75)),
        ("anthropic", "claude-haiku-4-5", (1.00, 5.00, 0.10, 1.25)),
        ("gemini", "gemini-2.5-flash", (0.30, 2.50, 0.075, 0.30)),
        ("vertex", "claude-sonnet-4@20250514", (3.00, 15.00, 0.30, 3.75)),  # Claude on Vertex
        ("vertex", "gemini-2.5-pro", (1.25, 10.00, 0.31, 1.25)),
        ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", (3.00, 15.00, 0.30, 3.75)),
        ("bedrock", "amazon.nova-pro-v1:0", (0.80, 3.20, 0.20, 0.80)),
        ("openrouter", "anthropic/claude-3-5-haiku", (0.80, 4.00, 0.08, 1.00)),
        ("mistral", "mistral-large-latest", (2.00, 6.00, 2.00, 2.00)),
        ("ollama", "llama3", (0.0, 0.0, 0.0, 0.0)),  # local: free
    ],
)
def test_lookup(host: str, model: str, expected: tuple[float, ...]) -> None:
    entry = TABLE.lookup(host, model)
    assert entry is not None
    price = Price.per_million(entry.input, entry.output, entry.cached_input, entry.cache_write, entry.reasoning)
    assert per_million(price) == expected


def test_unknown_models_have_no_price() -> None:
    assert TABLE.lookup("openai", "my-finetune") is None
    assert TABLE.lookup("openai", "gpt-4ox") is None  # a prefix only counts before '-', '@' or ':'
    assert TABLE.lookup("nosuchhost", "gpt-4o") is None


def test_cost_splits_cached_written_reasoning_and_visible_tokens() -> None:
    price = Price.per_million(input=3, output=15, cached_input=0.3, cache_write=3.75, reasoning=20, per_request=0.01)
    usage = Usage(
        prompt_tokens=1600,
        completion_tokens=300,
        cached_tokens=1000,
        cache_creation_tokens=500,
        reasoning_tokens=200,
    )
    # 100 fresh * 3 + 1000 read * 0.3 + 500 written * 3.75 + 100 visible * 15 + 200 reasoning * 20, + $0.01
    assert cost(usage, price) == pytest.approx((300 + 300 + 1875 + 1500 + 4000) / 1e6 + 0.01, abs=1e-15)
    # reasoning defaults to the output price, cache reads and writes to the input price
    plain = Price.per_million(input=2, output=8)
    assert cost(usage, plain) == pytest.approx((1600 * 2 + 300 * 8) / 1e6, abs=1e-15)
    assert cost(Usage(), plain) == 0.0


def test_format_cost() -> None:
    assert [format_cost(v) for v in (0.0, 0.00475, 1e-7, 12.5)] == ["0", "0.00475", "0.0000001", "12.5"]


def test_overrides_per_deployment() -> None:
    config = config_from_dict(
        {
            "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {
                    "name": "a",
                    "deployments": [
                        {"provider": "up", "model": "gpt-4o", "input_price": 1.0},
                        {"provider": "up", "model": "my-finetune"},
                        {"provider": "up", "model": "o3"},
                    ],
                },
            ],
            "governance": {"prices": {"up/my-finetune": {"input": 4, "output": 16, "cached_input": 2}}},
        }
    )
    book = PriceBook(config)
    # input_price replaces the table's input; the table's cached price and output stay
    assert per_million(book.for_label("up/gpt-4o")) == (1.0, 10.0, 1.25, 1.0)
    assert per_million(book.for_label("up/my-finetune")) == (4.0, 16.0, 2.0, 4.0)
    assert per_million(book.for_label("up/o3")) == (2.0, 8.0, 0.5, 2.0)
    assert book.for_label("up/gpt-3.5-turbo") is not None  # addressed directly, priced on first use
    assert book.for_label("elsewhere/gpt-4o") is None
    assert book.input_output("up/my-finetune") == pytest.approx((4.0, 16.0))


# --- end to end ------------------------------------------------------------------------------------


@pytest.fixture
def rich() -> Iterator[RichUsageOpenAI]:
    fake = RichUsageOpenAI()
    fake.start()
    yield fake
    fake.stop()


def workload_config(rich: Any, anthropic: Any, gemini: Any, openai_fake: Any, db: str) -> dict[str, Any]:
    return {
        "master_key": MASTER,
        "database_url": db,
        "providers": {
            "rich": {"type": "openai", "base_url": rich.base_url + "/v1"},
            "claude": {"type": "anthropic", "api_key": "k", "base_url": anthropic.base_url},
            "gem": {"type": "gemini", "api_key": "k", "base_url": gemini.base_url},
            "oai": {"type": "openai", "base_url": openai_fake.base_url + "/v1"},
        },
        "models": [
            {"name": "smart", "deployments": [{"provider": "rich", "model": "gpt-4o"}]},
            {"name": "contract", "deployments": [{"provider": "rich", "model": "gpt-4o-contract"}]},
            {"name": "claude", "deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
            {"name": "flash", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
            {"name": "embed", "deployments": [{"provider": "oai", "model": "text-embedding-3-small"}]},
            {"name": "mystery", "deployments": [{"provider": "oai", "model": "unpriced-model"}]},
        ],
        "governance": {
            "prices": {
                "rich/gpt-4o-contract": {
                    "input": 3,
                    "output": 15,
                    "cached_input": 0.3,
                    "cache_write": 3.75,
                    "reasoning": 20,
                }
            }
        },
    }


HELLO = [{"role": "user", "content": "Say hello"}]
CACHED_PROMPT = [
    {
        "role": "system",
        "content": [{"type": "text", "text": "A long document.", "cache_control": {"type": "ephemeral"}}],
    },
    {"role": "user", "content": "Summarise it"},
]


def test_a_fixed_workload_costs_what_the_price_table_says_to_the_cent(
    gateway_factory: Any, rich: Any, fake_anthropic: Any, fake_gemini: Any, fake_openai: Any, tmp_path: Path
) -> None:
    rich.usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    db = tmp_path / "cost.db"
    gw = gateway_factory(workload_config(rich, fake_anthropic, fake_gemini, fake_openai, f"sqlite:///{db}"))
    client = gw.openai(api_key=MASTER)
    charged: list[float] = []

    def ask(model: str, messages: list[dict[str, Any]] = HELLO) -> None:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        charged.append(float(raw.headers["x-sluicegate-cost"]))

    def stream(model: str, messages: list[dict[str, Any]] = HELLO, include_usage: bool = True) -> None:
        options = {"include_usage": True} if include_usage else None
        chunks = list(
            client.chat.completions.create(model=model, messages=messages, stream=True, stream_options=options)
        )
        costs = [chunk.model_extra["cost"] for chunk in chunks if chunk.model_extra and "cost" in chunk.model_extra]
        assert len(costs) == 1  # beside the usage, in the chunk that carries it
        carrier = next(chunk for chunk in chunks if chunk.model_extra and "cost" in chunk.model_extra)
        assert carrier.usage is not None and (carrier.choices == []) == include_usage
        charged.append(costs[0])

    for _ in range(10):
        ask("smart")
    for _ in range(5):
        stream("smart")
        stream("smart", include_usage=False)
    for _ in range(4):
        ask("contract")
        ask("claude", CACHED_PROMPT)
    for _ in range(2):
        stream("claude", CACHED_PROMPT)
        ask("claude")
    for _ in range(5):
        ask("flash")
        stream("flash")
    for _ in range(10):
        raw = client.embeddings.with_raw_response.create(model="embed", input="hello")
        charged.append(float(raw.headers["x-sluicegate-cost"]))
    mystery = client.chat.completions.with_raw_response.create(model="mystery", messages=HELLO)
    assert "x-sluicegate-cost" not in mystery.headers  # no price, no made-up cost

    # By hand, in USD per 1M tokens from prices.toml (2025-11-25):
    # smart, gpt-4o (2.50 in, 1.25 cached, 10 out; cache writes at the input price, reasoning at the output):
    #   100 fresh*2.50 + 1000 cached*1.25 + 100 written*2.50 + 100 visible*10 + 200 reasoning*10 = 4750
    smart = 100 * 2.50 + 1000 * 1.25 + 100 * 2.50 + 100 * 10 + 200 * 10
    # contract (the config's override): 100*3 + 1000*0.3 + 100*3.75 + 100*15 + 200*20 = 6475
    contract = 100 * 3 + 1000 * 0.3 + 100 * 3.75 + 100 * 15 + 200 * 20
    # claude-sonnet-4-5 (3 in, 0.30 cache read, 15 out), the fake reports 21 in + 1000 read, 9 out
    claude_cached, claude_plain = 21 * 3 + 1000 * 0.30 + 9 * 15, 21 * 3 + 9 * 15
    # gemini-2.5-flash (0.30 in, 2.50 out): 2 prompt tokens, 5 answer + 3 thinking tokens
    flash = 2 * 0.30 + (5 + 3) * 2.50
    # text-embedding-3-small (0.02 in): 5 tokens
    embed = 5 * 0.02
    expected = (20 * smart + 4 * contract + 6 * claude_cached + 2 * claude_plain + 10 * flash + 10 * embed) / 1_000_000
    assert expected == pytest.approx(0.124491, abs=1e-12)
    assert len(charged) == 52
    assert round(sum(charged), 2) == round(expected, 2) == 0.12
    assert sum(charged) == pytest.approx(expected, abs=1e-9)
    report = Admin(gw.base_url).spend("model")
    assert report["total_cost_usd"] == pytest.approx(expected, abs=1e-9)
    assert report["requests"] == 53
    by_model = {row["model"]: row for row in report["data"]}
    assert by_model["rich/gpt-4o"]["cost_usd"] == pytest.approx(20 * smart / 1e6, abs=1e-12)
    assert by_model["rich/gpt-4o"]["cached_tokens"] == 20 * 1000
    assert by_model["rich/gpt-4o"]["reasoning_tokens"] == 20 * 200
    assert by_model["oai/unpriced-model"]["cost_usd"] == 0.0
    rows = sqlite3.connect(db).execute("SELECT cost_usd FROM sluicegate_spend WHERE alias = 'mystery'").fetchall()
    assert rows == [(None,)]  # unknown, not zero


def spend_rows(gw: Any, db: Path) -> list[sqlite3.Row]:
    Admin(gw.base_url).spend()  # writes the waiting records
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    return connection.execute("SELECT * FROM sluicegate_spend ORDER BY id").fetchall()


def test_a_cancelled_stream_without_usage_is_counted_and_marked_estimated(
    gateway_factory: Any, rich: Any, fake_anthropic: Any, fake_gemini: Any, fake_openai: Any, tmp_path: Path
) -> None:
    rich.stream_usage = False
    db = tmp_path / "cancel.db"
    gw = gateway_factory(workload_config(rich, fake_anthropic, fake_gemini, fake_openai, f"sqlite:///{db}"))
    rich.faults.append(Fault(pace=0.3))
    stream = gw.openai(api_key=MASTER).chat.completions.create(model="smart", messages=HELLO, stream=True)
    received = [next(iter(stream)) for _ in range(2)]
    stream.close()
    assert received[1].choices[0].delta.content == "Hello"
    for _ in range(100):  # the gateway notices on its next write, within one pace
        rows = spend_rows(gw, db)
        if rows:
            break
        time.sleep(0.05)
    (row,) = rows
    assert row["cancelled"] == 1 and row["usage_estimated"] == 1 and row["stream"] == 1
    # the prompt by the tokenizer: "Say hello" is 2 tokens + 3 per message + 3 for the answer
    assert row["prompt_tokens"] == 8
    # what the provider generated before the client left: "Hello" (and maybe " from"), 1-2 tokens
    assert 1 <= row["completion_tokens"] <= 3
    assert row["cost_usd"] == pytest.approx((8 * 2.50 + row["completion_tokens"] * 10.0) / 1e6, abs=1e-15)


def test_a_stream_cut_off_upstream_is_charged_for_what_was_generated(
    gateway_factory: Any, rich: Any, fake_anthropic: Any, fake_gemini: Any, fake_openai: Any, tmp_path: Path
) -> None:
    db = tmp_path / "cut.db"
    gw = gateway_factory(workload_config(rich, fake_anthropic, fake_gemini, fake_openai, f"sqlite:///{db}"))
    rich.faults.append(Fault(cut_after=4))  # role chunk + "Hello", " from", " fake": the usage never comes
    with pytest.raises(Exception):  # noqa: B017 - the SDK reports the cut stream in its own way
        list(gw.openai(api_key=MASTER).chat.completions.create(model="smart", messages=HELLO, stream=True))
    (row,) = spend_rows(gw, db)
    assert row["usage_estimated"] == 1 and row["status"] == 502
    assert row["completion_tokens"] == 3  # "Hello from fake" in cl100k_base
    assert row["cost_usd"] == pytest.approx((8 * 2.50 + 3 * 10.0) / 1e6, abs=1e-15)


def test_answers_replayed_from_a_cache_are_not_charged_again(
    gateway_factory: Any,
    rich: Any,
    fake_anthropic: Any,
    fake_gemini: Any,
    fake_openai: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "replay.db"
    gw = gateway_factory(workload_config(rich, fake_anthropic, fake_gemini, fake_openai, f"sqlite:///{db}"))
    client = gw.openai(api_key=MASTER)
    first = client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
    assert float(first.headers["x-sluicegate-cost"]) == pytest.approx(0.00475)
    body = first.http_response.content

    async def replay(request: dict[str, Any], ctx: Any) -> ChatResult:
        # what the response cache and the idempotency store do on a hit: answer, and say so on the record
        ctx.record.cache = "hit"
        return ChatResult(body, Usage(1200, 300, 1500, cached_tokens=1000, reasoning_tokens=200))

    monkeypatch.setattr(gw.gateway.cache, "lookup", replay)
    again = client.chat.completions.with_raw_response.create(model="smart", messages=HELLO)
    assert again.headers["x-sluicegate-cost"] == "0"
    chunks = list(client.chat.completions.create(model="smart", messages=HELLO, stream=True))
    assert [c.model_extra["cost"] for c in chunks if c.model_extra and "cost" in c.model_extra] == [0.0]
    rows = spend_rows(gw, db)
    assert [(r["cache"], r["cost_usd"]) for r in rows] == [(None, pytest.approx(0.00475)), ("hit", 0.0), ("hit", 0.0)]
    assert len(rich.requests) == 1


def test_charge_uses_the_deployment_that_answered() -> None:
    from sluicegate.context import RequestContext
    from sluicegate.governance.admission import Admission

    config = config_from_dict(
        {
            "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [{"name": "a", "deployments": [{"provider": "up", "model": "gpt-4o"}]}],
        }
    )
    admission = Admission(config)
    ctx = RequestContext(request_id="r")
    record = RequestRecord("r", usage=Usage(1000, 100, 1100), deployment="up/gpt-4o")
    assert admission.charge(record, ctx) == pytest.approx((1000 * 2.5 + 100 * 10) / 1e6)
    assert ctx.response_headers == [(b"x-sluicegate-cost", b"0.0035")]
    record.deployment = "up/unknown"
    record.cost_usd = None
    assert admission.charge(record, ctx) == 0.0 and record.cost_usd is None


async def test_finish_stream_puts_the_cost_beside_the_usage_and_keeps_text_only_until_usage_comes() -> None:
    import msgspec

    from sluicegate.streaming.chunks import StreamUsage, chunks_text, finish_stream

    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    content = msgspec.json.encode(
        {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    )
    call = {"index": 0, "function": {"arguments": '{"city": '}}
    tool = msgspec.json.encode({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    finish = msgspec.json.encode({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = msgspec.json.encode({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})

    async def source(*chunks: bytes) -> Any:
        for chunk in chunks:
            yield chunk

    for include_usage in (True, False):
        tally = StreamUsage(keep_text=True, extras=lambda u: {"cost": u.prompt_tokens * 0.5})
        out = [
            msgspec.json.decode(c) async for c in finish_stream(source(content, finish, usage), include_usage, tally)
        ]
        carrier = out[-1]
        assert carrier["cost"] == 1.5 and carrier["usage"]["completion_tokens"] == 2
        assert (carrier["choices"] == []) == include_usage
        assert tally.text() == ""  # the provider's usage arrived: the kept text was dropped
    cut = StreamUsage(keep_text=True)
    assert [c async for c in finish_stream(source(content, tool), True, cut)] == [content, tool]
    assert cut.usage is None and cut.text() == 'Hi{"city": ' == chunks_text([content, tool])
    plain = StreamUsage()
    assert [c async for c in finish_stream(source(content, usage), True, plain)] == [content, usage]
    assert plain.text() == ""
