"""Where the text is: every string of a chat request or answer that a guardrail reads, and the way back.

Checked: message content (strings and text parts of content lists, refusals), tool-call and function-call
arguments, tool results, and the strings of unknown content shapes (so odd JSON cannot smuggle text past a
check). Not checked: image, audio and file parts, and tool definitions (they come from the application).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sluicegate.errors import InvalidRequestError

Path = tuple[str | int, ...]

#: deeper content than this is refused when a guardrail must read it, instead of being skipped unchecked
MAX_DEPTH = 32
_BINARY_PARTS = frozenset({"image_url", "input_audio", "file", "video_url", "image", "audio"})


@dataclass(frozen=True, slots=True)
class Segment:
    role: str
    text: str
    #: where the string sits in the request or answer document
    path: Path
    #: output only: the index of the choice whose message holds the string
    choice: int = 0
    #: content (an answer's text) or arguments (tool-call JSON)
    kind: str = "content"


def input_segments(request: dict[str, Any]) -> list[Segment]:
    segments: list[Segment] = []
    for index, message in enumerate(request.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        _content(segments, role, message.get("content"), ("messages", index, "content"))
        _tool_calls(segments, role, message, ("messages", index), 0)
    return segments


def output_segments(body: dict[str, Any]) -> tuple[list[Segment], list[str]]:
    """The answer's strings, and each choice's message content as a whole (for JSON checks)."""
    segments: list[Segment] = []
    answers: list[str] = []
    for index, choice in enumerate(body.get("choices") or ()):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        number = choice.get("index", index) if isinstance(choice.get("index"), int) else index
        content = message.get("content")
        if isinstance(content, str):
            segments.append(Segment("assistant", content, ("choices", index, "message", "content"), number))
            answers.append(content)
        elif content is not None:
            _content(segments, "assistant", content, ("choices", index, "message", "content"))
        if isinstance(message.get("refusal"), str):
            segments.append(Segment("assistant", message["refusal"], ("choices", index, "message", "refusal"), number))
        _tool_calls(segments, "assistant", message, ("choices", index, "message"), number)
    return segments, answers


def _content(segments: list[Segment], role: str, content: Any, path: Path) -> None:
    if isinstance(content, str):
        segments.append(Segment(role, content, path))
    elif isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in _BINARY_PARTS:
                continue
            if isinstance(part, dict) and isinstance(part.get("text"), str) and len(part) <= 3:
                segments.append(Segment(role, part["text"], (*path, index, "text")))
            else:
                _strings(segments, role, part, (*path, index), 1)
    elif content is not None:
        _strings(segments, role, content, path, 1)


def _tool_calls(segments: list[Segment], role: str, message: dict[str, Any], path: Path, choice: int) -> None:
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for index, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                where = (*path, "tool_calls", index, "function", "arguments")
                segments.append(Segment(role, function["arguments"], where, choice, "arguments"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        segments.append(Segment(role, legacy["arguments"], (*path, "function_call", "arguments"), choice, "arguments"))


def _strings(segments: list[Segment], role: str, node: Any, path: Path, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidRequestError(
            f"message content is nested deeper than {MAX_DEPTH} levels; guardrails cannot read it",
            code="content_too_deep",
        )
    if isinstance(node, str):
        segments.append(Segment(role, node, path))
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "type" or not isinstance(value, str):
                _strings(segments, role, value, (*path, key), depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _strings(segments, role, value, (*path, index), depth + 1)


@dataclass(frozen=True, slots=True)
class Joined:
    """Several segments as one text (joined by newlines) so every pattern runs once per request."""

    text: str
    members: tuple[int, ...]
    starts: tuple[int, ...]

    def locate(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(segment index, start, end) pieces of a span of the joined text, one per segment it touches."""
        slot = max(0, bisect.bisect_right(self.starts, start) - 1)
        while slot < len(self.members) and self.starts[slot] < end:
            begin = self.starts[slot]
            finish = self.starts[slot + 1] - 1 if slot + 1 < len(self.starts) else len(self.text)
            lo, hi = max(start, begin) - begin, min(end, finish) - begin
            if hi > lo:
                yield self.members[slot], lo, hi
            slot += 1


def join(segments: list[Segment], members: tuple[int, ...]) -> Joined:
    starts: list[int] = []
    position = 0
    for index in members:
        starts.append(position)
        position += len(segments[index].text) + 1
    return Joined("\n".join(segments[index].text for index in members), members, tuple(starts))


def replace_strings(document: dict[str, Any], replacements: dict[Path, str]) -> dict[str, Any]:
    """A copy of `document` with the strings at the given paths replaced; untouched branches are shared."""
    root: dict[str, Any] = dict(document)
    copied: set[Path] = {()}
    for path, value in replacements.items():
        node: Any = root
        for depth, key in enumerate(path[:-1]):
            prefix = path[: depth + 1]
            child = node[key]
            if prefix not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[key] = child
                copied.add(prefix)
            node = child
        node[path[-1]] = value
    return root
