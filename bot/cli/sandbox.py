"""``tsbot sandbox``: serve the ThingSpace sandbox alone (default http://127.0.0.1:8765).

Point a client (or ``THINGSPACE_BASE_URL``) at the printed base URL; it stands for
``https://thingspace.verizon.com/api``. ``--port 0`` picks a free port. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from types import FrameType

import uvicorn

from bot.sandbox import create_sandbox
from bot.sandbox.fleet import MAX_DEVICES

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def _devices(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEVICES}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535 (0 picks a free port)")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


class _Stopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument(
        "--devices", type=_devices, default=200, help="seeded lines in the fleet (default 200)"
    )
    parser.add_argument("--seed", type=int, default=1, help="fleet seed: same seed, same fleet (default 1)")
    parser.add_argument(
        "--client-id", default="sandbox-client", help="OAuth app key (default sandbox-client)"
    )
    parser.add_argument(
        "--client-secret", default="sandbox-secret", help="OAuth app secret (default sandbox-secret)"
    )
    parser.add_argument("--username", default="sandbox-user", help="API (UWS) user (default sandbox-user)")
    parser.add_argument(
        "--password", default="sandbox-pass", help="API (UWS) password (default sandbox-pass)"
    )
    parser.add_argument(
        "--account", default="0000123456-00001", help="billing account (default 0000123456-00001)"
    )
    parser.add_argument(
        "--latency", type=_seconds, default=0.0, help="seconds added to every API answer (default 0)"
    )
    parser.add_argument(
        "--callback-retry-interval",
        type=_seconds,
        default=300.0,
        help="seconds before an unacknowledged callback is sent again (default 300, as ThingSpace)",
    )
    parser.add_argument(
        "--cancel-location-per-hour",
        type=int,
        default=40,
        help="cancel-location requests processed per hour before queuing (default 40)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        sandbox = create_sandbox(
            devices=args.devices,
            seed=args.seed,
            client_id=args.client_id,
            client_secret=args.client_secret,
            username=args.username,
            password=args.password,
            account=args.account,
            callback_retry_interval=args.callback_retry_interval,
            default_latency=args.latency,
            cancel_location_per_hour=args.cancel_location_per_hour,
        )
    except ValueError as exc:
        print(f"tsbot sandbox: {exc}", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)  # accept (queue) connections as soon as the URL is printed
    except OSError as exc:
        sock.close()
        sandbox.close()
        print(f"tsbot sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    demo = sandbox.demo_devices()
    print(
        f"ThingSpace sandbox at http://{host}:{port} (stands for https://thingspace.verizon.com/api)",
        flush=True,
    )
    print(f"  OAuth client {args.client_id} / {args.client_secret}", flush=True)
    print(f"  API user     {args.username} / {args.password}", flush=True)
    print(f"  account      {args.account}, {args.devices} lines (seed {args.seed})", flush=True)
    if demo:
        print(
            "  demo lines   " + ", ".join(f"{v['label']} ({v['iccid']})" for v in demo.values()), flush=True
        )
    print(f"  control      http://{host}:{port}/_sandbox/   (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(sandbox.app, log_level="warning", access_log=False, lifespan="off")
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end quietly with status 0.
        signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        sandbox.close()
        sock.close()
    return 0
