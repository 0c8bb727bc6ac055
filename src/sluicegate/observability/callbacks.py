"""Callbacks: send every finished request to an external tool, in batches, off the hot path.

- `webhook`: POST `{"source": "sluicegate", "records": [<request entry>, ...]}` to any URL.
- `langfuse`: Langfuse's batch ingestion API (`POST /api/public/ingestion`, basic auth with the project's
  public and secret key): per request a `trace-create` and a `generation-create` event carrying the model,
  usage, cost, timings and status, the conventions Langfuse's own SDK integrations use.

Each callback has its own bounded queue: a slow or unreachable receiver delays and finally drops its own
records (counted in `sluicegate_observability_dropped_total{sink}`), never a request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import Any

import aiohttp
import msgspec

from sluicegate.context import RequestRecord
from sluicegate.observability.config import CallbackConfig
from sluicegate.observability.entry import iso_time, request_entry
from sluicegate.observability.queue import BatchQueue

log = logging.getLogger("sluicegate.observability")

KINDS = ("webhook", "langfuse")


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HttpCallback:
    """Batches records and POSTs them; subclasses decide the URL and the body."""

    def __init__(self, settings: CallbackConfig, name: str) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self.queue: BatchQueue[RequestRecord] = BatchQueue(
            name,
            self._deliver,
            max_items=settings.max_queue,
            batch_size=settings.batch_size,
            interval=settings.flush_interval,
            requeue_on_error=False,
        )

    # --- to override ---------------------------------------------------------------------------------
    def endpoint(self) -> str:
        raise NotImplementedError

    def body(self, records: list[RequestRecord]) -> dict[str, Any]:
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        return {}

    def check(self, status: int, payload: bytes) -> None:
        if status == 429 or status >= 500:
            raise DeliveryError(f"the receiver answered {status}")
        if status >= 400:
            # The receiver refuses this body; sending it again will not change its mind.
            raise DeliveryError(f"the receiver refused the batch with {status}", retryable=False)

    # --- the sink ------------------------------------------------------------------------------------
    def emit(self, record: RequestRecord) -> None:
        self.queue.put(record)

    async def start(self) -> None:
        await self.queue.start()

    async def aclose(self) -> None:
        await self.queue.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _entry(self, record: RequestRecord) -> dict[str, Any]:
        return request_entry(record, include_prompt=self.settings.include_prompts)

    async def _deliver(self, records: list[RequestRecord]) -> None:
        data = msgspec.json.encode(self.body(records))
        headers = {"content-type": "application/json", **self.auth_headers(), **self.settings.headers}
        for attempt in range(self.settings.retries + 1):
            try:
                await self._post(data, headers)
                return
            except (DeliveryError, aiohttp.ClientError, TimeoutError) as exc:
                retryable = getattr(exc, "retryable", True)
                if not retryable or attempt == self.settings.retries:
                    raise
                await asyncio.sleep(min(10.0, 0.5 * 2**attempt))

    async def _post(self, data: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        async with self._session.post(self.endpoint(), data=data, headers=headers) as response:
            payload = await response.read()
            self.check(response.status, payload)


class WebhookCallback(HttpCallback):
    def endpoint(self) -> str:
        return self.settings.url

    def body(self, records: list[RequestRecord]) -> dict[str, Any]:
        return {"source": "sluicegate", "records": [self._entry(record) for record in records]}


class LangfuseCallback(HttpCallback):
    def endpoint(self) -> str:
        return self.settings.url.rstrip("/") + "/api/public/ingestion"

    def auth_headers(self) -> dict[str, str]:
        pair = f"{self.settings.public_key or ''}:{self.settings.secret_key or ''}".encode()
        return {"authorization": "Basic " + base64.b64encode(pair).decode()}

    def check(self, status: int, payload: bytes) -> None:
        super().check(status, payload)
        if status == 207:
            # Langfuse accepts the batch and reports refused events one by one.
            errors = (msgspec.json.decode(payload) or {}).get("errors") or []
            if errors:
                log.warning("langfuse refused %d events, first: %s", len(errors), errors[0])

    def body(self, records: list[RequestRecord]) -> dict[str, Any]:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.extend(self.events(record))
        return {"batch": batch, "metadata": {"sdk_name": "sluicegate"}}

    def events(self, record: RequestRecord) -> list[dict[str, Any]]:
        entry = self._entry(record)
        start = record.started_at
        now = iso_time(start + record.latency_ms / 1000)
        metadata = {
            key: entry[key]
            for key in ("request_id", "endpoint", "deployment", "provider", "team", "cache", "attempts", "guardrails")
        }
        trace: dict[str, Any] = {
            "id": record.request_id,
            "name": f"{record.endpoint} {record.alias}",
            "timestamp": entry["timestamp"],
            "userId": record.key_id,
            "tags": [record.alias] if record.alias else [],
            "metadata": metadata,
        }
        usage = entry["usage"]
        generation: dict[str, Any] = {
            "id": f"{record.request_id}-generation",
            "traceId": record.request_id,
            "name": record.alias or record.endpoint,
            "startTime": entry["timestamp"],
            "endTime": now,
            "model": record.deployment.partition("/")[2] if record.deployment else record.alias,
            "metadata": {**metadata, "status": record.status, "stream": record.stream},
            "level": "ERROR" if record.status >= 400 else "DEFAULT",
        }
        if record.ttft_ms is not None:
            generation["completionStartTime"] = iso_time(start + record.ttft_ms / 1000)
        if usage:
            generation["usageDetails"] = {
                "input": usage["prompt_tokens"],
                "output": usage["completion_tokens"],
                "total": usage["total_tokens"],
            }
        if record.cost_usd is not None:
            generation["costDetails"] = {"total": record.cost_usd}
        if record.error_code:
            generation["statusMessage"] = record.error_code
        if "prompt" in entry:
            trace["input"] = generation["input"] = entry["prompt"]
        return [
            {"id": uuid.uuid4().hex, "type": "trace-create", "timestamp": now, "body": trace},
            {"id": uuid.uuid4().hex, "type": "generation-create", "timestamp": now, "body": generation},
        ]


def build_callback(settings: CallbackConfig, index: int) -> HttpCallback:
    """`index` is the callback's position in the config list; it names the queue in the metrics."""
    name = f"callback-{index}-{settings.type}"
    if settings.type == "langfuse":
        return LangfuseCallback(settings, name)
    return WebhookCallback(settings, name)
