"""A bare pass-through proxy: the reference row of the benchmark.

aiohttp server + one aiohttp client session on uvloop, forwarding POST /v1/chat/completions to the upstream
byte for byte (streams are relayed chunk by chunk as they arrive). No parsing, routing, auth or accounting:
the distance between this row and the gateway's row is what the gateway's features cost; the distance
between this row and the direct row is what any Python hop costs.

Run: python bench/passthrough_proxy.py --upstream http://127.0.0.1:PORT/v1 --port 4001
Serves GET /health/readiness like the gateway, so the bench waits for both the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM_KEY = web.AppKey("upstream", str)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Authorization", "Accept")


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    return {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION_KEY]
    body = await request.read()
    url = request.app[UPSTREAM_KEY] + "/chat/completions"
    async with session.post(url, data=body, headers=_forwarded_headers(request)) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(status=upstream.status, body=await upstream.read(), content_type=content_type)
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": content_type})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def readiness(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    # limit=0: no cap, so 500 concurrent streams never queue inside the proxy.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    app[SESSION_KEY] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600))
    yield
    await app[SESSION_KEY].close()


def build_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM_KEY] = upstream.rstrip("/")
    app.cleanup_ctx.append(_client_session)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health/readiness", readiness)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000/v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    web.run_app(
        build_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        shutdown_timeout=2.0,
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
