"""AWS Bedrock's Converse and ConverseStream APIs: convert, sign, send, map errors, convert back.

The conversions live in converse.py and stream.py, the binary framing in eventstream.py, the signing in
sigv4.py. Credentials come from the provider's `aws:` section or the standard AWS environment variables;
a Bedrock API key (`api_key`, or AWS_BEARER_TOKEN_BEDROCK) is sent as a bearer token instead of signing.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec
from yarl import URL

from sluicegate.errors import ConfigurationError, UpstreamError
from sluicegate.providers.base import Call, ChatResult, Provider, decode_upstream_object, new_completion_id
from sluicegate.providers.bedrock import converse
from sluicegate.providers.bedrock.config import AwsConfig
from sluicegate.providers.bedrock.eventstream import Decoder
from sluicegate.providers.bedrock.sigv4 import Credentials, sign
from sluicegate.providers.bedrock.stream import StreamTranslator

_SERVICE = "bedrock"


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

    def _url(self, model: str, operation: str) -> str:
        resolved = converse.model_id(model, self._profile, self._region)
        # Model ids hold ':' and ARNs '/': one path segment, fully escaped.
        return f"{self._base}/model/{quote(resolved, safe='')}/{operation}"

    @staticmethod
    def _as_signed(url: str) -> URL:
        # aiohttp would normalise `%3A` in a model id back to `:`; the request must go out byte for byte as
        # signed (the form botocore sends), hence encoded=True.
        return URL(url, encoded=True)

    def _signed(self, url: str, body: bytes, call: Call) -> dict[str, str]:
        headers = self._headers
        if self._credentials is not None:
            headers = sign("POST", url, headers, body, self._credentials, self._region, _SERVICE, datetime.now(UTC))
        # Forwarded after signing: AWS accepts unsigned headers that are not x-amz-*.
        return {**headers, **call.forward_headers} if call.forward_headers else headers

    async def chat(self, call: Call) -> ChatResult:
        body = msgspec.json.encode(converse.converse_request(call.request, call.model))
        url = self._url(call.model, "converse")
        response = await self.http.post(self._as_signed(url), body, self._signed(url, body, call), call.timeouts)
        answer = decode_upstream_object(response.body)
        completion = converse.chat_response(answer, call.model, completion_id=new_completion_id())
        return ChatResult(msgspec.json.encode(completion), converse.usage(answer.get("usage") or {}))

    async def stream_chat(self, call: Call) -> AsyncIterator[bytes]:
        body = msgspec.json.encode(converse.converse_request(call.request, call.model))
        url = self._url(call.model, "converse-stream")
        translator = StreamTranslator(call.model, completion_id=new_completion_id(), created=int(time.time()))
        decoder = Decoder()
        reads = self.http.stream_bytes(self._as_signed(url), body, self._signed(url, body, call), call.timeouts)
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


def _credentials(aws: AwsConfig) -> Credentials | None:
    key_id = aws.access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = aws.secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None
    token = aws.session_token or (os.environ.get("AWS_SESSION_TOKEN") if not aws.access_key_id else None)
    return Credentials(key_id, secret, token)
