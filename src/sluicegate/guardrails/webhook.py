"""Webhook: ask an external HTTP service whether a text may pass.

The gateway POSTs `{"guardrail", "stage", "model", "request_id", "text"}` as JSON and expects
`{"action": "allow"}` or `{"action": "deny", "reason": "..."}` back within `timeout` seconds. A failure
(timeout, connection error, non-2xx, unreadable answer) lets the text through with `fail: open` and refuses
the request with a 503 naming the guardrail with `fail: closed`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec

from sluicegate.guardrails.base import Check, Finding, GuardrailUnavailable, Subject
from sluicegate.providers.base import Timeouts
from sluicegate.providers.http import HttpClient

if TYPE_CHECKING:
    from sluicegate.guardrails.config import GuardrailConfig

log = logging.getLogger("sluicegate.guardrails")


class _Verdict(msgspec.Struct):
    action: str
    reason: str | None = None


_decode_verdict = msgspec.json.Decoder(_Verdict)


class WebhookCheck(Check):
    remote = True
    wants_final = True

    def __init__(self, config: GuardrailConfig) -> None:
        assert config.url is not None  # checked with the config
        self.name = config.name
        self.url = config.url
        self.fail_open = config.fail == "open"
        self.timeout = config.timeout
        self.headers = {"Content-Type": "application/json", **config.headers}
        self.timeouts = Timeouts(connect=config.timeout, first_token=config.timeout, total=config.timeout)
        self.http = HttpClient(max_connections=100, user_agent="sluicegate-guardrail")

    def scan(self, text: str, subject: Subject) -> list[Finding]:
        raise TypeError("a webhook check is remote: call ascan")

    async def ascan(self, text: str, subject: Subject) -> list[Finding]:
        if subject.mode == "window":
            return []  # a streamed answer is sent once, when complete
        payload = {
            "guardrail": self.name,
            "stage": subject.stage,
            "model": subject.request.get("model"),
            "request_id": subject.request_id,
            "text": text,
        }
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.http.post(self.url, msgspec.json.encode(payload), self.headers, self.timeouts)
            verdict = _decode_verdict.decode(response.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failed(type(exc).__name__)
        if verdict.action == "allow":
            return []
        if verdict.action == "deny":
            return [Finding("WEBHOOK_DENIED")]
        return self._failed(f"unknown action '{verdict.action[:40]}'")

    def _failed(self, reason: str) -> list[Finding]:
        if self.fail_open:
            log.warning("guardrail %s: webhook failed (%s); failing open", self.name, reason)
            return []
        raise GuardrailUnavailable(
            f"Guardrail '{self.name}' could not get an answer from its webhook ({reason}); failing closed",
        )

    async def aclose(self) -> None:
        await self.http.aclose()


def build(config: GuardrailConfig) -> WebhookCheck:
    return WebhookCheck(config)
