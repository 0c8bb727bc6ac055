"""Guardrails on a stream as it passes: nothing is sent before it has been checked, nothing waits for the end.

Each channel (a choice's content, a tool call's arguments) keeps the text it has received but not yet sent.
On every chunk the guardrails scan that text together with a little already-sent context, and only the part
that no finding can still grow into is released: everything except the last `window` characters, never
cutting a word, a finding or a placeholder in two. So a secret split across chunks is whole when it is
scanned, a redacted value is replaced before its first character leaves, and a block ends the stream with an
error event before the offending text is sent. Checks on the whole answer (language, JSON, webhook) run when
the choice finishes, before the chunk that finishes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from sluicegate.context import RequestContext
from sluicegate.guardrails.base import GuardrailBlocked, GuardrailUnavailable, Subject
from sluicegate.guardrails.plan import Plan, RequestState, judge, publish
from sluicegate.guardrails.redaction import PLACEHOLDER, Span, merge_spans

#: already-sent characters scanned again for their left context (word boundaries, labels such as `password=`)
_CONTEXT = 64
#: a channel never holds more than this: a single "word" this long is released even unfinished
_MAX_PENDING = 64 * 1024
_CONTENT = -1


class _Channel:
    __slots__ = ("context", "emitted", "pending", "whole")

    def __init__(self, keep_whole: bool) -> None:
        self.pending = ""
        self.context = ""
        #: characters of this channel already released
        self.emitted = 0
        self.whole: list[str] | None = [] if keep_whole else None


class StreamGuard:
    def __init__(self, plan: Plan, state: RequestState, request: dict[str, Any], ctx: RequestContext) -> None:
        self.guards = plan.output
        self.window = plan.window
        self.keep_whole = plan.wants_final
        self.state = state
        self.request = request
        self.ctx = ctx
        redactor = state.redactor
        self.restorer = redactor if redactor is not None and redactor.originals else None
        self.channels: dict[tuple[int, int], _Channel] = {}

    async def run(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        template: dict[str, Any] | None = None
        try:
            async for chunk in chunks:
                if b'"choices":[]' in chunk:
                    yield chunk  # the usage chunk: no text
                    continue
                data: dict[str, Any] = msgspec.json.decode(chunk)
                template = data
                yield msgspec.json.encode(data) if await self._process(data) else chunk
            if self.channels and template is not None:
                # the upstream ended without finishing every choice: release what is held, checked
                yield msgspec.json.encode(await self._flush_all(template))
        except (GuardrailBlocked, GuardrailUnavailable):
            publish(self.ctx, self.state, header=False)
            raise
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        publish(self.ctx, self.state, header=False)

    async def _process(self, data: dict[str, Any]) -> bool:
        changed = False
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            number = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    delta["content"] = await self._feed((number, _CONTENT), content)
                    changed = True
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                        function["arguments"] = await self._feed((number, call.get("index", 0)), function["arguments"])
                        changed = True
            if choice.get("finish_reason") is not None:
                changed = await self._finish(number, choice) or changed
        return changed

    async def _feed(self, key: tuple[int, int], text: str) -> str:
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = _Channel(self.keep_whole and key[1] == _CONTENT)
        channel.pending += text
        if channel.whole is not None:
            channel.whole.append(text)
        return await self._release(channel, final=False)

    async def _finish(self, number: int, choice: dict[str, Any]) -> bool:
        """Release a finishing choice's held text into its last chunk, after the checks on its whole answer."""
        keys = [key for key in self.channels if key[0] == number]
        if not keys:
            return False
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice["delta"] = {}
        for key in keys:
            channel = self.channels.pop(key)
            rest = await self._release(channel, final=True)
            if channel.whole is not None:
                await self._judge_whole("".join(channel.whole))
            if key[1] == _CONTENT:
                delta["content"] = (delta.get("content") or "") + rest
            elif rest:
                _append_arguments(delta, key[1], rest)
        return True

    async def _flush_all(self, template: dict[str, Any]) -> dict[str, Any]:
        choices: dict[int, dict[str, Any]] = {}
        for number, _ in list(self.channels):
            choices.setdefault(number, {"index": number, "delta": {}, "finish_reason": None})
        for number, choice in choices.items():
            await self._finish(number, choice)
        envelope: dict[str, Any] = {k: template[k] for k in ("id", "object", "created", "model") if k in template}
        return {**envelope, "choices": list(choices.values())}

    async def _release(self, channel: _Channel, final: bool) -> str:
        pending = channel.pending
        if not pending or (not final and len(pending) <= self.window):
            return ""
        base = len(channel.context)
        text = channel.context + pending
        subject = Subject(
            "output", self.request, mode="window", offset=channel.emitted - base, request_id=self.ctx.request_id
        )
        spans: list[Span] = []
        for guard in self.guards:
            findings = [f for f in await guard.scan(text, subject) if f.whole or f.end > base]
            for finding in judge(guard, findings, self.state, "output"):
                spans.append(Span(max(finding.start, base) - base, finding.end - base, finding.entity))
        keep_whole = list(spans)
        if self.restorer is not None:
            keep_whole.extend(Span(*m.span(), "") for m in PLACEHOLDER.finditer(pending))
        cut = len(pending) if final else self._cut(pending, keep_whole)
        if cut <= 0:
            return ""
        released = pending[:cut]
        ready = [span for span in merge_spans(spans) if span.end <= cut]
        if ready:
            released = self.state.redactions().redact(released, ready, avoid=text)
        if self.restorer is not None:
            released = self.restorer.restore(released)
        channel.pending = pending[cut:]
        channel.context = (channel.context + pending[:cut])[-_CONTEXT:]
        channel.emitted += cut
        return released

    def _cut(self, pending: str, spans: list[Span]) -> int:
        size = len(pending)
        cut = size - self.window
        # a word is released whole or not at all: an unfinished token may yet become a finding
        space = max(pending.rfind(" ", 0, cut), pending.rfind("\n", 0, cut), pending.rfind("\t", 0, cut))
        if space >= 0:
            cut = space + 1
        elif size < _MAX_PENDING:
            return 0
        for span in sorted(spans, key=lambda s: s.start, reverse=True):
            # never split a finding, and hold back one that reaches the end: it may still grow
            if span.start < cut and (span.end > cut or span.end >= size):
                cut = span.start
        return cut

    async def _judge_whole(self, answer: str) -> None:
        subject = Subject("output", self.request, answers=(answer,), mode="final", request_id=self.ctx.request_id)
        for guard in self.guards:
            if guard.check.wants_final:
                judge(guard, await guard.scan(answer, subject), self.state, "output")


def _append_arguments(delta: dict[str, Any], index: int, text: str) -> None:
    calls = delta.setdefault("tool_calls", [])
    for call in calls:
        if isinstance(call, dict) and call.get("index", 0) == index:
            function = call.setdefault("function", {})
            function["arguments"] = (function.get("arguments") or "") + text
            return
    calls.append({"index": index, "function": {"arguments": text}})
