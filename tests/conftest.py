"""Shared fixtures: fake providers over real sockets, and a real gateway server per test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import uvicorn

from sluicegate.config import config_from_dict
from sluicegate.gateway import Gateway
from sluicegate.server.app import App
from tests.fakes.server import FakeProvider


class RunningGateway:
    """A gateway served by uvicorn on 127.0.0.1 in a background thread, as `sluicegate serve` would."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.gateway = Gateway(config_from_dict(config))
        self.app = App(self.gateway)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        uv_config = uvicorn.Config(self.app, loop="uvloop", http="httptools", lifespan="on", log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> RunningGateway:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def openai(self, api_key: str = "test-key", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=0, **kwargs)

    def async_openai(self, api_key: str = "test-key", **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=0, **kwargs)


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    started: list[RunningGateway] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        gateway = RunningGateway(config).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def _fake(cls: type[FakeProvider]) -> Iterator[FakeProvider]:
    fake = cls().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeProvider]:
    from tests.fakes.openai import FakeOpenAI

    yield from _fake(FakeOpenAI)


@pytest.fixture(scope="session")
def _fake_anthropic_server() -> Iterator[FakeProvider]:
    from tests.fakes.anthropic import FakeAnthropic

    yield from _fake(FakeAnthropic)


@pytest.fixture(scope="session")
def _fake_gemini_server() -> Iterator[FakeProvider]:
    from tests.fakes.gemini import FakeGemini

    yield from _fake(FakeGemini)


@pytest.fixture
def fake_openai(_fake_openai_server: FakeProvider) -> Iterator[Any]:
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()


@pytest.fixture
def fake_anthropic(_fake_anthropic_server: FakeProvider) -> Iterator[Any]:
    _fake_anthropic_server.reset()
    yield _fake_anthropic_server
    _fake_anthropic_server.reset()


@pytest.fixture
def fake_gemini(_fake_gemini_server: FakeProvider) -> Iterator[Any]:
    _fake_gemini_server.reset()
    yield _fake_gemini_server
    _fake_gemini_server.reset()
