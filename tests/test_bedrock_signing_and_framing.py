"""Bedrock's two wire mechanics, each checked against a reference: SigV4 against AWS's published examples and
botocore, the event-stream decoder against hand-built frames, split reads and corruption."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

import pytest

from sluicegate.errors import UpstreamError
from sluicegate.providers.bedrock import sigv4
from sluicegate.providers.bedrock.eventstream import Decoder, encode

# --- SigV4 ---------------------------------------------------------------------------------------------

EXAMPLE = sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)


def _signature(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


def test_aws_published_iam_list_users_example() -> None:
    headers = sigv4.sign(
        "GET",
        "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        b"",
        EXAMPLE,
        "us-east-1",
        "iam",
        EXAMPLE_TIME,
    )
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )
    assert sigv4.signing_key(EXAMPLE.secret_access_key, "20150830", "us-east-1", "iam").hex() == (
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    )


def test_aws_test_suite_get_vanilla() -> None:
    headers = sigv4.sign(
        "GET", "https://example.amazonaws.com/", {}, b"", EXAMPLE, "us-east-1", "service", EXAMPLE_TIME
    )
    assert _signature(headers) == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


def test_canonical_rules() -> None:
    # Non-S3 services sign the path encoded a second time; queries are sorted and strictly encoded.
    assert (
        sigv4.canonical_path("/model/us.anthropic.claude-v2%3A1/converse")
        == "/model/us.anthropic.claude-v2%253A1/converse"
    )
    assert sigv4.canonical_path("") == "/"
    assert sigv4.canonical_query("b=2&a=x y&a=1") == "a=1&a=x%20y&b=2"


@pytest.mark.parametrize(
    "url",
    [
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-v1%3A0/converse-stream",
        "https://bedrock-runtime.eu-west-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A1%3Ainference-profile%2Feu.x/converse",
        "http://127.0.0.1:8123/model/meta.llama3-70b-instruct-v1%3A0/converse?x=1&a=b%20c",
    ],
)
@pytest.mark.parametrize("token", [None, "session-token"])
def test_matches_botocore(url: str, token: str | None) -> None:
    botocore_auth = pytest.importorskip("botocore.auth")
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b'{"messages":[{"role":"user","content":[{"text":"hi  there"}]}]}'
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    ours = sigv4.sign(
        "POST",
        url,
        {"Content-Type": "application/json"},
        body,
        sigv4.Credentials("AKID", "SECRET/KEY", token),
        "us-east-1",
        "bedrock",
        now,
    )
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    request.context["timestamp"] = ours["x-amz-date"]
    request.headers["X-Amz-Date"] = ours["x-amz-date"]
    if token:
        request.headers["X-Amz-Security-Token"] = token
    auth = botocore_auth.SigV4Auth(Credentials("AKID", "SECRET/KEY", token), "bedrock", "us-east-1")
    canonical = auth.canonical_request(request)
    assert _signature(ours) == auth.signature(auth.string_to_sign(request, canonical), request)


def test_secret_never_in_repr() -> None:
    assert "SECRET" not in repr(sigv4.Credentials("AKID", "SECRET"))


# --- event stream --------------------------------------------------------------------------------------


def test_frame_layout_matches_the_specification() -> None:
    frame = encode({":event-type": "messageStart"}, b'{"role":"assistant"}')
    total, headers_length, prelude_crc = struct.unpack(">III", frame[:12])
    assert total == len(frame) and prelude_crc == zlib.crc32(frame[:8])
    assert frame[12 : 12 + headers_length] == b"\x0b:event-type\x07\x00\x0cmessageStart"
    assert frame[12 + headers_length : -4] == b'{"role":"assistant"}'
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])


def test_decoder_reassembles_frames_from_reads_of_any_size() -> None:
    frames = [encode({":event-type": f"e{i}", ":message-type": "event"}, f'{{"n":{i}}}'.encode()) for i in range(5)]
    data = b"".join(frames)
    for size in (1, 3, 17, len(data)):
        decoder = Decoder()
        messages = [m for start in range(0, len(data), size) for m in decoder.feed(data[start : start + size])]
        assert [m.event_type for m in messages] == [f"e{i}" for i in range(5)]
        assert [m.payload for m in messages] == [f'{{"n":{i}}}'.encode() for i in range(5)]
        assert decoder.pending == 0


def test_decoder_reads_every_header_type() -> None:
    headers = (
        b"\x01a\x00"
        + b"\x01b\x01"
        + b"\x01c\x02\xff"
        + b"\x01d\x03\x00\x02"
        + b"\x01e\x04\x00\x00\x00\x03"
        + b"\x01f\x05"
        + struct.pack(">q", 4)
        + b"\x01g\x06\x00\x02hi"
        + b"\x01h\x08"
        + struct.pack(">q", 5)
        + b"\x01i\x09"
        + bytes(range(16))
    )
    prelude = struct.pack(">II", 12 + len(headers) + 4, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    frame = message + struct.pack(">I", zlib.crc32(message))
    (decoded,) = Decoder().feed(frame)
    assert decoded.headers["a"] is True and decoded.headers["b"] is False
    assert [decoded.headers[k] for k in "cdefgh"] == [-1, 2, 3, 4, b"hi", 5]
    assert str(decoded.headers["i"]) == "00010203-0405-0607-0809-0a0b0c0d0e0f"


@pytest.mark.parametrize("where", [2, 9, 30])
def test_corruption_is_an_upstream_error(where: int) -> None:
    frame = bytearray(encode({":event-type": "x"}, b"{}"))
    frame[where] ^= 0xFF
    with pytest.raises(UpstreamError) as caught:
        Decoder().feed(bytes(frame))
    assert caught.value.code == "upstream_malformed_response"


def test_absurd_length_is_refused_before_buffering() -> None:
    prelude = struct.pack(">II", 1 << 30, 0)
    with pytest.raises(UpstreamError, match="impossible message length"):
        Decoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
