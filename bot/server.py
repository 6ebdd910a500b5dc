"""``tsbot serve``: the production server (HTTP; ``--socket-mode`` for Slack over Socket Mode)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from bot.config import ConfigError, Settings

__all__ = ["add_arguments", "proxy_options", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default TSBOT_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default TSBOT_PORT or 3000)")
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="take Slack over Socket Mode (needs SLACK_APP_TOKEN); ThingSpace callbacks still arrive over HTTP",
    )


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn options: believe X-Forwarded-For only from ``TSBOT_TRUSTED_PROXIES``."""
    trusted = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    return {"proxy_headers": True, "forwarded_allow_ips": trusted or ["127.0.0.1"]}


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"tsbot serve: configuration error: {exc}", file=sys.stderr)
        return 2
    missing = settings.missing_to_serve()
    if args.socket_mode and not settings.slack_app_token:
        missing.append("SLACK_APP_TOKEN")
    if missing:
        print(
            f"tsbot serve: refusing to start: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} empty. Set {'it' if len(missing) == 1 else 'them'} in the "
            "environment (see the README's configuration reference).",
            file=sys.stderr,
        )
        return 2
    from bot.app import Runtime
    from bot.logs import configure_logging, register_secrets

    configure_logging(settings.log_level)
    register_secrets(settings)
    runtime = Runtime(settings).start()
    socket = None
    if args.socket_mode:
        from bot.socket_mode import start_socket_mode

        socket = start_socket_mode(runtime)
    host = args.host or settings.host
    port = args.port or settings.port
    log.info("tsbot serving on %s:%s", host, port)
    try:
        uvicorn.run(
            runtime.web,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **proxy_options(settings),  # type: ignore[arg-type]
        )
    finally:
        if socket is not None:
            socket.close()
        runtime.stop()
    return 0
