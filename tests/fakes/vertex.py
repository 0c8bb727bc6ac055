"""A fake Vertex AI: Google's OAuth token endpoint, Gemini (`generateContent`, `streamGenerateContent`,
`predict`) and Anthropic (`rawPredict`, `streamRawPredict`) publishers, behind bearer tokens it issued.

The token endpoint verifies the service account's JWT assertion against the public half of a key the test
generated (`generate_service_account`), as Google does, so a wrongly signed, wrongly addressed or expired
assertion is refused. Model answers reuse the fake Gemini's and fake Anthropic's, in Vertex's URLs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.server import FakeProvider, Fault, Handler, send_sse

PROJECT = "sluice-test"
LOCATION = "europe-west4"
CLIENT_EMAIL = "gateway@sluice-test.iam.gserviceaccount.com"
EMBEDDING_TOKENS = 3

_PREFIX = "/v1/projects/{project}/locations/{location}/publishers"
_MODEL = "{model:[^/:]+}"


def generate_service_account(path: Path, token_uri: str) -> tuple[Path, bytes]:
    """A service-account key file with a fresh RSA key; returns the file and the public key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "key-1",
        "private_key": private.decode(),
        "client_email": CLIENT_EMAIL,
        "client_id": "1234",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path, public


class FakeVertex(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.public_key: bytes = b""
        #: access tokens issued, in order; requests must carry the latest one
        self.issued: list[str] = []
        self.assertions: list[dict[str, Any]] = []
        self._counter = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def reset(self) -> None:
        super().reset()
        self.issued.clear()
        self.assertions.clear()

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/token", _token),
            ("POST", f"{_PREFIX}/google/models/{_MODEL}:generateContent", _generate),
            ("POST", f"{_PREFIX}/google/models/{_MODEL}:streamGenerateContent", _stream_generate),
            ("POST", f"{_PREFIX}/google/models/{_MODEL}:predict", _predict),
            ("POST", f"{_PREFIX}/anthropic/models/{_MODEL}:rawPredict", _raw_predict),
            ("POST", f"{_PREFIX}/anthropic/models/{_MODEL}:streamRawPredict", _raw_predict),
        ]

    def error_response(self, status: int, message: str) -> dict[str, Any]:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT",
            }
        }


# --- auth -----------------------------------------------------------------------------------------


async def _token(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    assert isinstance(fake, FakeVertex)
    form = dict(parse_qsl((await request.read()).decode()))
    if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    from google.auth import jwt

    try:
        claims = jwt.decode(form["assertion"], certs=fake.public_key, audience=fake.token_uri)
    except (ValueError, KeyError) as exc:
        return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
    if claims.get("iss") != CLIENT_EMAIL or "cloud-platform" not in claims.get("scope", ""):
        return web.json_response({"error": "invalid_scope"}, status=400)
    fake.assertions.append(claims)
    token = f"ya29.fake-{next(fake._counter)}"
    fake.issued.append(token)
    return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


def _unauthorized(fake: FakeProvider, request: web.Request) -> web.Response | None:
    assert isinstance(fake, FakeVertex)
    match = request.match_info
    if (match["project"], match["location"]) != (PROJECT, LOCATION):
        return web.json_response(fake.error_response(404, "project or location not found"), status=404)
    header = request.headers.get("authorization", "")
    if not fake.issued or header != f"Bearer {fake.issued[-1]}":
        body = {
            "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }
        }
        return web.json_response(body, status=401)
    return None


# --- Gemini publisher --------------------------------------------------------------------------------


async def _generate(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(fake, request)
    if refused is not None:
        return refused
    return web.json_response(fake_gemini._combine(fake_gemini._answer_events(body, request.match_info["model"])))


async def _stream_generate(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(fake, request)
    if refused is not None:
        return refused
    if request.query.get("alt") != "sse":
        return web.json_response(fake.error_response(400, "the gateway must ask for alt=sse"), status=400)
    events = fake_gemini._answer_events(body, request.match_info["model"])
    return await send_sse(request, [(None, event) for event in events], fault)


async def _predict(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(fake, request)
    if refused is not None:
        return refused
    size = (body.get("parameters") or {}).get("outputDimensionality") or fake_gemini.EMBEDDING_SIZE
    predictions = [
        {
            "embeddings": {
                "values": fake_gemini.expected_vector(i["content"], size),
                "statistics": {"token_count": EMBEDDING_TOKENS, "truncated": False},
            }
        }
        for i in body["instances"]
    ]
    return web.json_response({"predictions": predictions})


# --- Anthropic publisher -----------------------------------------------------------------------------


async def _raw_predict(fake: FakeProvider, request: web.Request, body: Any, fault: Fault) -> web.StreamResponse:
    refused = _unauthorized(fake, request)
    if refused is not None:
        return refused
    if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
        message = "anthropic_version must be vertex-2023-10-16 and model must not be in the body"
        return web.json_response(fake_anthropic.error_body("invalid_request_error", message), status=400)
    streaming = request.path.endswith(":streamRawPredict")
    if streaming != bool(body.get("stream")):
        return web.json_response(
            fake_anthropic.error_body("invalid_request_error", "stream flag and method disagree"), status=400
        )
    message = fake_anthropic.answer({**body, "model": request.match_info["model"]}, message_id="msg_vrtx0001")
    if streaming:
        return await send_sse(request, fake_anthropic.stream_events(message), fault)
    return web.json_response(message)
