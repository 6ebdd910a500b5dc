"""The ``tsbot`` command line.

Each subcommand lives in its own module of :mod:`bot.cli`, which exposes ``add_arguments(parser)``
and ``run(args) -> int``; this file only maps names to modules. A module that fails to import
stops ``tsbot`` with the import error: a broken install is never half a bot.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bot import __version__

#: subcommand -> (module, one-line help). The names are the CLI's contract (README: "Running it for real").
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bot.cli.demo", "run the sandbox, the local Slack stand-in and the bot together, with a prompt"),
    "serve": ("bot.cli.serve", "serve Slack and ThingSpace callbacks over HTTP (production)"),
    "sandbox": ("bot.cli.sandbox", "run the ThingSpace sandbox alone"),
    "callbacks": (
        "bot.cli.callbacks",
        "register or list the bot's ThingSpace callback listeners; unreadable callbacks kept",
    ),
    "manifest": ("bot.cli.manifest", "print the Slack app manifest"),
    "audit": ("bot.cli.audit", "verify, export or retain the audit log"),
    "check": ("bot.cli.check", "validate configuration and reach Slack and ThingSpace"),
    "outbox": ("bot.cli.outbox", "list the Slack messages given up on, or send them again"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsbot",
        description="Slack chat-ops for Verizon ThingSpace fleets.",
    )
    parser.add_argument("--version", action="version", version=f"tsbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    # every command logs the same way as serve: redacted JSON lines on stderr, secrets registered
    from bot.core.logs import configure_from_env

    configure_from_env(os.environ)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
