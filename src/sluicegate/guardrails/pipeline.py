"""The guardrail pipeline the gateway calls on input, on complete answers and on streams.

Which guardrails apply to which alias is worked out once, at start-up: an alias without guardrails costs one
dict lookup per request. A virtual key may add guardrails by name in `principal.metadata["guardrails"]`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from sluicegate.config import Config
from sluicegate.context import RequestContext
from sluicegate.errors import ConfigurationError
from sluicegate.guardrails.base import GuardrailBlocked, GuardrailUnavailable, Stage, Subject
from sluicegate.guardrails.plan import Guardrail, Plan, RequestState, judge, publish
from sluicegate.guardrails.redaction import Span, merge_spans
from sluicegate.guardrails.registry import build_check
from sluicegate.guardrails.streaming import StreamGuard
from sluicegate.guardrails.text import Joined, Segment, input_segments, join, output_segments, replace_strings
from sluicegate.providers.base import ChatResult

log = logging.getLogger("sluicegate.guardrails")


class GuardrailPipeline:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.guardrails: dict[str, Guardrail] = {}
        for guardrail in config.guardrails:
            try:
                check = build_check(guardrail)
            except ValueError as exc:
                raise ConfigurationError(f"guardrail '{guardrail.name}'{exc}") from None
            self.guardrails[guardrail.name] = Guardrail.build(guardrail, check)
        self.plans: dict[str, Plan] = {
            model.name: Plan.of([self.guardrails[name] for name in model.guardrails])
            for model in config.models
            if model.guardrails
        }
        self._key_plans: dict[tuple[str, tuple[str, ...]], Plan] = {}

    def enabled_for(self, ctx: RequestContext, alias: str) -> bool:
        return self._plan(alias, ctx) is not None

    async def aclose(self) -> None:
        for guardrail in self.guardrails.values():
            aclose = getattr(guardrail.check, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- the three hooks ---------------------------------------------------------------------------

    async def check_input(self, request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Return the request to send (possibly redacted), or raise a 400 naming the guardrail."""
        plan = self._plan(request.get("model"), ctx)
        if plan is None:
            return request
        state = ctx.guardrails = RequestState(plan)
        if not plan.input:
            return request
        segments = input_segments(request)
        subject = Subject("input", request, request_id=ctx.request_id)
        spans = await self._scan(plan.input, segments, subject, state, ctx, restore_allowed=True)
        if spans:
            redactor = state.redactions()
            avoid = "\n".join(segment.text for segment in segments)
            request = replace_strings(
                request,
                {segments[i].path: redactor.redact(segments[i].text, merge_spans(s), avoid) for i, s in spans.items()},
            )
        publish(ctx, state)
        return request

    async def check_output(self, request: dict[str, Any], result: ChatResult, ctx: RequestContext) -> ChatResult:
        """Check a complete answer; return it (possibly redacted) or raise a 400 naming the guardrail.

        Placeholders are put back by `restore_output`, after the cache has stored the answer without them.
        """
        state = self._state(request, ctx)
        if state is None or not state.plan.output:
            return result
        body: dict[str, Any] = msgspec.json.decode(result.body)
        segments, answers = output_segments(body)
        subject = Subject("output", request, answers=answers, request_id=ctx.request_id)
        spans = await self._scan(state.plan.output, segments, subject, state, ctx, restore_allowed=False)
        if spans:
            redactor = state.redactions()
            body = replace_strings(
                body, {segments[i].path: redactor.redact(segments[i].text, merge_spans(s)) for i, s in spans.items()}
            )
            result = ChatResult(msgspec.json.encode(body), result.usage)
        publish(ctx, state)
        return result

    def restore_output(self, result: ChatResult, ctx: RequestContext) -> ChatResult:
        """Put this request's original values back where the answer repeats their placeholders."""
        state = ctx.guardrails
        if not isinstance(state, RequestState) or state.redactor is None or not state.redactor.originals:
            return result
        if b"<" not in result.body:
            return result
        body: dict[str, Any] = msgspec.json.decode(result.body)
        redactor = state.redactor
        segments, _ = output_segments(body)
        replacements = {s.path: redactor.restore(s.text) for s in segments if "<" in s.text}
        if not replacements:
            return result
        return ChatResult(msgspec.json.encode(replace_strings(body, replacements)), result.usage)

    def check_stream(
        self, request: dict[str, Any], chunks: AsyncIterator[bytes], ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        state = self._state(request, ctx)
        if state is None:
            return chunks
        restores = state.redactor is not None and bool(state.redactor.originals)
        if not state.plan.output and not restores:
            return chunks
        return StreamGuard(state.plan, state, request, ctx).run(chunks)

    # --- helpers -----------------------------------------------------------------------------------

    def _plan(self, alias: Any, ctx: RequestContext) -> Plan | None:
        plan = self.plans.get(alias)
        metadata = ctx.principal.metadata
        names = metadata.get("guardrails") if metadata else None
        if not names:
            return plan
        key = (str(alias), tuple(names))
        combined = self._key_plans.get(key)
        if combined is None:
            combined = self._key_plans[key] = self._combine(plan, key[1])
        return combined

    def _combine(self, plan: Plan | None, names: tuple[str, ...]) -> Plan:
        chosen = {g.name: g for g in (plan.input + plan.output if plan else ())}
        for name in names:
            guardrail = self.guardrails.get(name)
            if guardrail is None:
                # fail closed: a key that asks for a check the gateway does not have must not skip it
                raise ConfigurationError(f"the API key asks for guardrail '{name}', which is not configured")
            chosen.setdefault(name, guardrail)
        return Plan.of(list(chosen.values()))

    def _state(self, request: dict[str, Any], ctx: RequestContext) -> RequestState | None:
        state = ctx.guardrails
        if isinstance(state, RequestState):
            return state
        plan = self._plan(request.get("model"), ctx)
        if plan is None:
            return None
        state = ctx.guardrails = RequestState(plan)
        return state

    async def _scan(
        self,
        guardrails: Sequence[Guardrail],
        segments: list[Segment],
        subject: Subject,
        state: RequestState,
        ctx: RequestContext,
        restore_allowed: bool,
    ) -> dict[int, list[Span]]:
        """Run each guardrail over the segments it reads; returns the spans to redact, by segment."""
        joined: dict[frozenset[str] | None, Joined] = {}
        spans: dict[int, list[Span]] = {}
        stage: Stage = subject.stage
        try:
            for guardrail in guardrails:
                roles = guardrail.roles if stage == "input" else None
                text = joined.get(roles)
                if text is None:
                    members = tuple(i for i, s in enumerate(segments) if stage == "output" or guardrail.reads(s))
                    text = joined[roles] = join(segments, members)
                if not text.text:
                    continue
                findings = await guardrail.scan(text.text, subject)
                restore = guardrail.restore and restore_allowed
                for finding in judge(guardrail, findings, state, stage):
                    for index, start, end in text.locate(finding.start, finding.end):
                        spans.setdefault(index, []).append(Span(start, end, finding.entity, restore))
        except (GuardrailBlocked, GuardrailUnavailable):
            publish(ctx, state, header=False)
            raise
        return spans
