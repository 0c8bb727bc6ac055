"""Vertex AI: service-account tokens (a generated RSA key, verified by a fake token endpoint), then Gemini and
Anthropic on Vertex through the gateway with the openai and anthropic SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from sluicegate.errors import ConfigurationError
from sluicegate.providers.vertex.adapter import anthropic_body, embeddings_request
from sluicegate.providers.vertex.auth import TokenSource
from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.server import Fault
from tests.fakes.vertex import CLIENT_EMAIL, EMBEDDING_TOKENS, LOCATION, PROJECT, FakeVertex, generate_service_account

WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeVertex]:
    server = FakeVertex().start()
    key_file, public = generate_service_account(tmp_path_factory.mktemp("gcp") / "sa.json", server.token_uri)
    server.public_key = public
    server.key_file = key_file  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def vertex(fake: FakeVertex) -> FakeVertex:
    fake.reset()
    return fake


@pytest.fixture
def gw(gateway_factory: Any, vertex: FakeVertex) -> Any:
    settings = {"project": PROJECT, "location": LOCATION, "credentials_file": str(vertex.key_file)}  # type: ignore[attr-defined]
    return gateway_factory(
        {
            "providers": {"gcp": {"type": "vertex", "base_url": vertex.base_url, "vertex": settings}},
            "models": [
                {"name": "gemini", "deployments": [{"provider": "gcp", "model": "gemini-2.5-flash"}]},
                {"name": "claude", "deployments": [{"provider": "gcp", "model": "claude-sonnet-4-5@20250929"}]},
                {"name": "embed", "deployments": [{"provider": "gcp", "model": "text-embedding-005"}]},
            ],
        }
    )


# --- converters and auth ---------------------------------------------------------------------------------


def test_anthropic_body_has_version_and_no_model() -> None:
    body = anthropic_body(
        {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}, "claude-x", stream=True
    )
    assert body == {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert embeddings_request(["a", "b"], 64) == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 64},
    }


def test_assertion_is_a_signed_jwt_for_the_token_endpoint(fake: FakeVertex) -> None:
    from google.auth import jwt

    source = TokenSource.from_file(str(fake.key_file))  # type: ignore[attr-defined]
    assert source.project == PROJECT and source.token_uri == fake.token_uri
    claims = jwt.decode(source.assertion(now=1_700_000_000), certs=fake.public_key, verify=False)
    assert claims == {
        "iss": CLIENT_EMAIL,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": fake.token_uri,
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }
    header = json.loads(__import__("base64").urlsafe_b64decode(source.assertion().split(".")[0] + "=="))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}


def test_bad_credentials_fail_at_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigurationError, match="cannot read"):
        TokenSource.from_file(str(missing))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"type": "external_account"}))
    with pytest.raises(ConfigurationError, match="not supported"):
        TokenSource.from_file(str(other))


# --- through the gateway ------------------------------------------------------------------------------------


def test_gemini_on_vertex_reuses_one_token(gw: Any, vertex: FakeVertex) -> None:
    client = gw.openai()
    for _ in range(3):
        answer = client.chat.completions.create(model="gemini", messages=MESSAGES)
        assert answer.choices[0].message.content == "Hello from fake Gemini."
    assert len(vertex.issued) == 1 and len(vertex.assertions) == 1
    sent = vertex.requests[-1]
    assert (
        sent.path
        == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert sent.headers["authorization"] == f"Bearer {vertex.issued[0]}"
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_gemini_on_vertex_stream_and_tools(gw: Any) -> None:
    client = gw.openai()
    chunks = list(client.chat.completions.create(model="gemini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Gemini."
    tool = client.chat.completions.create(model="gemini", messages=MESSAGES, tools=[WEATHER_TOOL])
    assert json.loads(tool.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_anthropic_on_vertex(gw: Any, vertex: FakeVertex) -> None:
    client = gw.openai()
    answer = client.chat.completions.create(model="claude", messages=MESSAGES, max_tokens=100)
    assert answer.choices[0].message.content == fake_anthropic.TEXT
    assert vertex.requests[-1].path.endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict")
    chunks = list(client.chat.completions.create(model="claude", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True))
    arguments = "".join(
        call.function.arguments or "" for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []
    )
    assert json.loads(arguments) == {"city": "Paris"}
    assert vertex.requests[-1].path.endswith(":streamRawPredict")


def test_anthropic_sdk_to_claude_on_vertex(gw: Any) -> None:
    sdk = anthropic.Anthropic(base_url=gw.base_url, api_key="k", max_retries=0)
    with sdk.messages.stream(model="claude", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == fake_anthropic.TEXT


def test_embeddings_on_vertex(gw: Any) -> None:
    answer = gw.openai().embeddings.create(model="embed", input=["one", "two"], encoding_format="float")
    assert [item.embedding for item in answer.data] == [
        fake_gemini.expected_vector("one"),
        fake_gemini.expected_vector("two"),
    ]
    assert answer.usage.prompt_tokens == 2 * EMBEDDING_TOKENS


def test_token_endpoint_failure_is_502_and_retried_next_time(gw: Any, vertex: FakeVertex) -> None:
    vertex.faults.append(Fault(status=500))
    with pytest.raises(openai.APIStatusError) as caught:
        gw.openai().chat.completions.create(model="gemini", messages=MESSAGES)
    assert caught.value.status_code == 502 and vertex.requests[-1].path == "/token"
    assert gw.openai().chat.completions.create(model="gemini", messages=MESSAGES).choices[0].message.content
    assert len(vertex.issued) == 1
