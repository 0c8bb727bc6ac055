"""The in-process library: the same gateway core, called without HTTP.

    import sluicegate
    answer = sluicegate.completion(model="demo", messages=[{"role": "user", "content": "hi"}])
    for chunk in sluicegate.completion(model="demo", messages=[...], stream=True): ...
    answer = await sluicegate.acompletion(model="smart", messages=[...])

Answers are plain dicts in the OpenAI wire format; failures raise `sluicegate.GatewayError` subclasses.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from os import PathLike
from typing import Any, TypeVar

import msgspec

from sluicegate.config import Config, config_from_dict, load_config
from sluicegate.gateway import Gateway, RequestContext

T = TypeVar("T")

_default: Gateway | None = None
_default_lock = threading.Lock()


def configure(config: str | PathLike[str] | dict[str, Any] | Config | None = None) -> Gateway:
    """Set the gateway the module-level functions use: a YAML path, a config dict, or the environment."""
    global _default
    if isinstance(config, Config):
        gateway = Gateway(config)
    elif isinstance(config, dict):
        gateway = Gateway(config_from_dict(config))
    elif config is not None:
        gateway = Gateway(load_config(config))
    else:
        from sluicegate.autoconfig import gateway_from_environment

        gateway = gateway_from_environment(os.environ.get("SLUICEGATE_CONFIG"))
    with _default_lock:
        previous, _default = _default, gateway
    if previous is not None and _loop_thread is not None:
        # Close the old pools on the loop they live in, without blocking the caller on it.
        asyncio.run_coroutine_threadsafe(previous.aclose(), _loop_thread.loop)
    return gateway


def default_gateway() -> Gateway:
    with _default_lock:
        gateway = _default
    return gateway if gateway is not None else configure()


def _context(idempotency_key: str | None = None) -> RequestContext:
    ctx = RequestContext(authenticated=True)
    if idempotency_key is not None:
        ctx.control["idempotency-key"] = idempotency_key  # what the server reads from `Idempotency-Key`
    return ctx


async def acompletion(
    model: str,
    messages: list[dict[str, Any]],
    *,
    stream: bool = False,
    gateway: Gateway | None = None,
    idempotency_key: str | None = None,
    **params: Any,
) -> Any:
    """A chat completion: a dict, or with `stream=True` an async iterator of chunk dicts.

    `idempotency_key` works like the `Idempotency-Key` header: a repeat gets the stored answer unpaid
    (see `sluicegate.step_key` for durable workflows).
    """
    gw = gateway or default_gateway()
    await gw.start()
    request = {"model": model, "messages": messages, **params}
    if not stream:
        answer = await gw.chat(request, _context(idempotency_key))
        return answer.result.as_dict()
    request["stream"] = True
    opened = await gw.stream_chat(request, _context(idempotency_key))
    return _decoded(opened.chunks)


async def _decoded(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for chunk in chunks:
            yield msgspec.json.decode(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def aembedding(
    model: str, input: str | list[Any], *, gateway: Gateway | None = None, **params: Any
) -> dict[str, Any]:
    gw = gateway or default_gateway()
    await gw.start()
    answer = await gw.embeddings({"model": model, "input": input, **params}, _context())
    return answer.result.as_dict()


def completion(
    model: str,
    messages: list[dict[str, Any]],
    *,
    stream: bool = False,
    idempotency_key: str | None = None,
    **params: Any,
) -> Any:
    """The blocking twin of `acompletion`; with `stream=True` an iterator of chunk dicts."""
    result = _run(acompletion(model, messages, stream=stream, idempotency_key=idempotency_key, **params))
    return _blocking_iter(result) if stream else result


def embedding(model: str, input: str | list[Any], **params: Any) -> dict[str, Any]:
    return _run(aembedding(model, input, **params))


class _LoopThread:
    """One event loop in a daemon thread: the blocking API's connection pools live there across calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="sluicegate-loop").start()


_loop_thread: _LoopThread | None = None
_loop_lock = threading.Lock()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    global _loop_thread
    with _loop_lock:
        if _loop_thread is None:
            _loop_thread = _LoopThread()
        loop = _loop_thread.loop
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _blocking_iter(chunks: AsyncIterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    try:
        while True:
            try:
                yield _run(anext(chunks))  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
    finally:
        _run(chunks.aclose())  # type: ignore[attr-defined]
