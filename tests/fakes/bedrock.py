"""A fake Bedrock runtime: Converse (JSON) and ConverseStream (binary AWS event-stream frames), SigV4-checked.

Deterministic answers: a `toolUse` of the first tool when the last turn is the user's own text and tools
are offered, otherwise "Hello from fake Bedrock.", streamed word by word. Like the real service it rejects
what a converter could get wrong (turns that do not alternate, blank text, a toolResult answering no toolUse,
missing maxTokens) and checks each request's SigV4 signature, with botocore's signer when it is installed, so
a signing mistake shows up as the real 403 instead of being trusted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sluicegate.providers.bedrock.eventstream import encode
from tests.fakes.server import FakeProvider, Fault, Handler

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDFAKEBEDROCK"
SECRET_ACCESS_KEY = "fake/secret+key"
SESSION_TOKEN = "fake-session-token"
INPUT_TOKENS = 13
OUTPUT_TOKENS = 6

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


class FakeBedrock(FakeProvider):
    TEXT = "Hello from fake Bedrock."

    def __init__(self) -> None:
        super().__init__()
        #: the x-amz-date and credential scope of every request whose signature checked out
        self.verified: list[str] = []

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/model/{model}/converse", _converse),
            ("POST", "/model/{model}/converse-stream", _converse_stream),
        ]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        return {"message": message}

    def reset(self) -> None:
        super().reset()
        self.verified.clear()

    @staticmethod
    def credentials(session_token: bool = True) -> dict[str, Any]:
        """The `aws:` section a gateway config needs to call this fake."""
        aws: dict[str, Any] = {"region": REGION, "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}
        if session_token:
            aws["session_token"] = SESSION_TOKEN
        return aws


# --- handlers -------------------------------------------------------------------------------------


async def _converse(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = await _check(fake, request, body)
    if problem is not None:
        return problem
    model = unquote(request.match_info["model"])
    return web.json_response(answer(body, model))


async def _converse_stream(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    problem = await _check(fake, request, body)
    if problem is not None:
        return problem
    frames = stream_frames(answer(body, unquote(request.match_info["model"])))
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
    await response.prepare(request)
    for index, data in enumerate(frames):
        if fault.cut_after is not None and index >= fault.cut_after:
            assert request.transport is not None
            request.transport.abort()
            return response
        if fault.error_event_after is not None and index == fault.error_event_after:
            await response.write(exception_frame("modelStreamErrorException", "injected model stream error"))
            await response.write_eof()
            return response
        if fault.pace and index:
            await asyncio.sleep(fault.pace)
        # Split each frame in two writes: the gateway's decoder must reassemble frames across reads.
        await response.write(data[:7])
        await response.write(data[7:])
    await response.write_eof()
    return response


# --- validation -----------------------------------------------------------------------------------


async def _check(fake: FakeProvider, request: web.Request, body: Any) -> web.Response | None:
    assert isinstance(fake, FakeBedrock)
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return None
    failure = _verify_signature(request, await request.read(), auth)
    if failure is not None:
        return _error(403, f"The request signature we calculated does not match the signature you provided ({failure})")
    fake.verified.append(request.headers["x-amz-date"])
    problem = _invalid(body)
    return _error(400, problem) if problem else None


def _verify_signature(request: web.Request, raw: bytes, authorization: str) -> str | None:
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 authorization"
    fields = dict(part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    key_id, _date, region, service, _ = fields["Credential"].split("/")
    if (key_id, region, service) != (ACCESS_KEY_ID, REGION, "bedrock"):
        return f"wrong credential scope {fields['Credential']}"
    if request.headers.get("x-amz-security-token") != SESSION_TOKEN:
        return "missing session token"
    signed = {name: request.headers.get(name, "") for name in fields["SignedHeaders"].split(";")}
    # The path exactly as it came over the wire: the signer must have signed that, encoded once more.
    url = f"http://{request.headers['host']}{request.raw_path}"
    expected = _reference_signature(url, signed, raw, request.headers["x-amz-date"])
    return None if expected == fields["Signature"] else "signature mismatch"


def _reference_signature(url: str, headers: dict[str, str], body: bytes, amz_date: str) -> str:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:  # pragma: no cover - botocore is in the test extra
        import hashlib
        import hmac

        from sluicegate.providers.bedrock import sigv4

        canonical = sigv4.canonical_request("POST", url, headers, hashlib.sha256(body).hexdigest())
        scope = f"{amz_date[:8]}/{REGION}/bedrock/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        key = sigv4.signing_key(SECRET_ACCESS_KEY, amz_date[:8], REGION, "bedrock")
        return hmac.new(key, f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode(), "sha256").hexdigest()
    auth = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN), "bedrock", REGION)
    aws_request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    aws_request.context["timestamp"] = amz_date
    canonical = auth.canonical_request(aws_request)
    return str(auth.signature(auth.string_to_sign(aws_request, canonical), aws_request))


def _invalid(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages: at least one message is required"
    if "model" in body or "stream" in body:
        return "extraneous key [model] is not permitted"
    if not isinstance((body.get("inferenceConfig") or {}).get("maxTokens"), int):
        return "inferenceConfig.maxTokens must be an integer"
    previous: set[str] = set()
    for index, turn in enumerate(body["messages"]):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn.get("role") != expected:
            return f"A conversation must alternate between user and assistant roles (at messages.{index})"
        for block in turn.get("content") or []:
            if "text" in block and not block["text"].strip():
                return f"messages.{index}: text content blocks must be non-empty"
            result = block.get("toolResult")
            if result is not None and result.get("toolUseId") not in previous:
                return f"messages.{index}: toolResult blocks do not match any toolUse in the previous turn"
        previous = {b["toolUse"]["toolUseId"] for b in turn.get("content") or [] if "toolUse" in b}
    return None


def _error(status: int, message: str) -> web.Response:
    headers = {"x-amzn-ErrorType": f"{_ERROR_TYPES.get(status, 'InternalServerException')}:http://internal.amazon.com/"}
    return web.json_response({"message": message}, status=status, headers=headers)


# --- answers --------------------------------------------------------------------------------------


def answer(body: dict[str, Any], model: str) -> dict[str, Any]:
    last = body["messages"][-1]
    answered = any("toolResult" in block for block in last["content"])
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if tools and last["role"] == "user" and not answered:
        spec = tools[0]["toolSpec"]
        properties = (spec.get("inputSchema") or {}).get("json", {}).get("properties") or {}
        tool_input = {"city": "Paris"} if "city" in properties else {}
        content: list[dict[str, Any]] = [
            {"toolUse": {"toolUseId": "tooluse_fake1", "name": spec["name"], "input": tool_input}}
        ]
        stop = "tool_use"
    else:
        content = [{"text": FakeBedrock.TEXT}]
        stop = "end_turn"
    usage = {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS, "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS}
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 42},
    }


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode(headers, json.dumps(payload).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode(headers, json.dumps({"message": message}).encode())


def stream_frames(message: dict[str, Any]) -> list[bytes]:
    """The answer as ConverseStream sends it: text word by word, tool input in several JSON pieces."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(message["output"]["message"]["content"]):
        if "text" in block:
            words = block["text"].split(" ")
            pieces = [word + " " for word in words[:-1]] + words[-1:]
            frames += [
                event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}}) for p in pieces
            ]
        else:
            tool = block["toolUse"]
            start = {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}
            frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            arguments = json.dumps(tool["input"], separators=(",", ":"))
            for at in range(0, len(arguments), 4):
                delta = {"toolUse": {"input": arguments[at : at + 4]}}
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(event_frame("messageStop", {"stopReason": message["stopReason"]}))
    frames.append(event_frame("metadata", {"usage": message["usage"], "metrics": message["metrics"]}))
    return frames
