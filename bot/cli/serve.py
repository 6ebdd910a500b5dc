"""``tsbot serve``: the production server (HTTP; ``--socket-mode`` for Slack over Socket Mode).

It refuses to start, saying what to fix and without a traceback, when the configuration is
unusable, a required secret is empty, the address cannot be listened on or the database cannot be
opened. The listening socket is bound before anything starts, so a second copy started on a port
in use stops there. With ``--socket-mode`` the Socket Mode runner is a part of the runtime: it
connects in the background (retrying while Slack cannot be reached) and is a ``/readyz`` check.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sqlite3
import sys

import uvicorn

from bot.core.config import ConfigError, Settings

__all__ = ["add_arguments", "listen", "proxy_options", "run"]

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


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (raises OSError: in use, no such address…)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0 (what socket.create_server passes): asyncio turns TCP_NODELAY on for
    # accepted connections only then; without it every reused keep-alive request waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _refuse(text: str) -> None:
    print(f"tsbot serve: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        _refuse(f"configuration error: {exc}")
        return 2
    missing = settings.missing_to_serve()
    if args.socket_mode and not settings.slack_app_token:
        missing.append("SLACK_APP_TOKEN")
    if missing:
        one = len(missing) == 1
        _refuse(
            f"refusing to start: {', '.join(missing)} {'is' if one else 'are'} empty. Set "
            f"{'it' if one else 'them'} in the environment (see the README's configuration reference)."
        )
        return 2
    from bot.app import Runtime
    from bot.core.logs import configure_logging, register_secrets

    configure_logging(settings.log_level)
    register_secrets(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    try:
        listener = listen(host, port)
    except OSError as exc:
        _refuse(f"cannot listen on {host}:{port}: {exc.strerror or exc} (TSBOT_HOST, TSBOT_PORT or --port)")
        return 1
    try:
        # with --socket-mode, the Socket Mode runner is a part of the runtime (a /readyz check)
        runtime = Runtime(settings, socket_mode=args.socket_mode)
    except (sqlite3.Error, OSError) as exc:
        listener.close()
        _refuse(f"cannot open the database {settings.db_path} (TSBOT_DB): {exc}")
        return 1
    runtime.start()
    log.info("tsbot serving on %s:%s%s", host, port, " (Slack over Socket Mode)" if args.socket_mode else "")
    config = uvicorn.Config(
        runtime.web,
        log_config=None,
        access_log=False,
        lifespan="off",
        **proxy_options(settings),  # type: ignore[arg-type]
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        runtime.stop()
        listener.close()
    return 0
