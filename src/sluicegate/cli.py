"""`sluicegate serve` and `sluicegate check-config`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sluicegate.config import ConfigError

log = logging.getLogger("sluicegate")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SLUICEGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"sluicegate: config error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluicegate", description="An LLM gateway: one OpenAI-compatible endpoint for many providers."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway's HTTP server")
    serve.add_argument(
        "--config",
        "-c",
        default=os.environ.get("SLUICEGATE_CONFIG"),
        help="YAML config file (default: $SLUICEGATE_CONFIG, else configure from the environment)",
    )
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port, 4000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file without serving")
    check.add_argument("file")
    check.set_defaults(run=_check_config)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    from sluicegate.config import load_config
    from sluicegate.gateway import Gateway

    config = load_config(args.file)
    Gateway(config)  # builds every provider, so adapter-level mistakes show up here too
    print(f"{args.file}: OK ({len(config.providers)} providers, {len(config.models)} aliases)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from sluicegate.autoconfig import gateway_from_environment
    from sluicegate.errors import ConfigurationError

    try:
        gateway = gateway_from_environment(args.config)
    except ConfigurationError as exc:
        raise ConfigError(exc.message) from None
    settings = gateway.config.server
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    workers = args.workers if args.workers is not None else settings.workers
    if gateway.is_open:
        log.warning("no master_key is set: the gateway is OPEN to anyone who can reach %s:%s", host, port)
    from sluicegate.server.run import run_server

    run_server(gateway, host=host, port=port, workers=workers, config_path=args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
