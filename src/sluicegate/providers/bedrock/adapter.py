"""AWS Bedrock's Converse and ConverseStream APIs: convert, sign, send, map errors, convert back.

The conversions live in converse.py and stream.py, the binary framing in eventstream.py, the signing in
sigv4.py. Credentials come from the provider's `aws:` section or the standard AWS environment variables;
a Bedrock API key (`api_key`, or AWS_BEARER_TOKEN_BEDROCK) is sent as a bearer token instead of signing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec
from yarl import URL

from sluicegate.errors import ConfigurationError, GatewayError, UpstreamError, UpstreamTimeoutError
from sluicegate.providers.base import Call, ChatResult, Provider, Timeouts
from sluicegate.providers.bedrock import converse
from sluicegate.providers.bedrock.config import AwsConfig
from sluicegate.providers.bedrock.eventstream import Decoder
from sluicegate.providers.bedrock.sigv4 import Credentials, sign
from sluicegate.providers.bedrock.stream import StreamTranslator
from sluicegate.providers.http import HttpClient, HttpResponse, _transport_error, upstream_error

_SERVICE = "bedrock"
_MAX_ERROR_BODY = 64 * 1024


class BedrockProvider(Provider):
    type_name: ClassVar[str] = "bedrock"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        aws = self.config.aws or AwsConfig()
        region = aws.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigurationError(f"provider '{self.name}' (bedrock) needs aws.region or AWS_REGION")
        self._region = region
        self._profile = aws.inference_profile
        self._credentials = _credentials(aws) if not self.config.api_key else None
        if self._credentials is None and not self.config.api_key:
            raise ConfigurationError(
                f"provider '{self.name}' (bedrock) needs AWS credentials (aws.access_key_id and "
                "aws.secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or a Bedrock API key"
            )
        base = self.config.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        self._base = base.rstrip("/")
        self._headers = {"Content-Type": "application/json", **self.config.headers}
        if self.config.api_key:
            self._headers["Authorization"] = f"Bearer {self.config.api_key}"
        self.http = self._bedrock_http = _BedrockHttp(max_connections=self.config.max_connections)

    def _url(self, model: str, operation: str) -> str:
        resolved = converse.model_id(model, self._profile, self._region)
        # Model ids hold ':' and ARNs '/': one path segment, fully escaped.
        return f"{self._base}/model/{quote(resolved, safe='')}/{operation}"

    def _signed(self, url: str, body: bytes, call: Call) -> dict[str, str]:
        headers = self._headers
        if self._credentials is not None:
            headers = sign("POST", url, headers, body, self._credentials, self._region, _SERVICE, datetime.now(UTC))
        # Forwarded after signing: AWS accepts unsigned headers that are not x-amz-*.
        return {**headers, **call.forward_headers} if call.forward_headers else headers

    async def chat(self, call: Call) -> ChatResult:
        body = msgspec.json.encode(converse.converse_request(call.request, call.model))
        url = self._url(call.model, "converse")
        response = await self._bedrock_http.send(url, body, self._signed(url, body, call), call.timeouts)
        answer = _decode(response.body)
        completion = converse.chat_response(answer, call.model, completion_id=_completion_id())
        return ChatResult(msgspec.json.encode(completion), converse.usage(answer.get("usage") or {}))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = msgspec.json.encode(converse.converse_request(call.request, call.model))
        url = self._url(call.model, "converse-stream")
        translator = StreamTranslator(call.model, completion_id=_completion_id(), created=int(time.time()))
        decoder = Decoder()
        reads = self._bedrock_http.stream_bytes(url, body, self._signed(url, body, call), call.timeouts)
        async with aclosing(reads):
            async for data in reads:
                for message in decoder.feed(data):
                    for chunk in translator.feed(message):
                        yield msgspec.json.encode(chunk)
        if not translator.finished or decoder.pending:
            raise UpstreamError(
                "Bedrock's stream ended before messageStop and metadata", code="upstream_incomplete_response"
            )
        for chunk in translator.finish():
            yield msgspec.json.encode(chunk)


class _BedrockHttp(HttpClient):
    """The shared client, plus what Bedrock needs: URLs sent exactly as signed, and a raw byte stream.

    aiohttp would normalise `%3A` in a model id back to `:`; the request must go out byte for byte as
    signed (the form botocore sends), hence `encoded=True`.
    """

    async def send(self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts) -> HttpResponse:
        session = self._get_session()
        try:
            async with session.post(
                URL(url, encoded=True), data=body, headers=headers, timeout=self._client_timeout(timeouts, False)
            ) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise upstream_error(response.status, response.headers, payload)
                return HttpResponse(response.status, response.headers, payload)
        except GatewayError:
            raise
        except BaseException as exc:
            raise _transport_error(exc) from exc

    async def stream_bytes(
        self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts
    ) -> AsyncGenerator[bytes, None]:
        """POST and yield the body as it arrives; errors before the first read are raised from the first `__anext__`."""
        session = self._get_session()
        deadline = time.monotonic() + timeouts.total
        try:
            async with session.post(
                URL(url, encoded=True), data=body, headers=headers, timeout=self._client_timeout(timeouts, True)
            ) as response:
                if response.status >= 400:
                    raise upstream_error(
                        response.status, response.headers, await response.content.read(_MAX_ERROR_BODY)
                    )
                async for data in response.content.iter_any():
                    yield data
                    if time.monotonic() > deadline:
                        raise UpstreamTimeoutError(f"stream exceeded the total timeout of {timeouts.total:g}s")
        except (GatewayError, GeneratorExit):
            raise
        except BaseException as exc:
            raise _transport_error(exc) from exc


def _credentials(aws: AwsConfig) -> Credentials | None:
    key_id = aws.access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = aws.secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None
    token = aws.session_token or (os.environ.get("AWS_SESSION_TOKEN") if not aws.access_key_id else None)
    return Credentials(key_id, secret, token)


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError("Bedrock returned a malformed response", code="upstream_malformed_response")
    return data
