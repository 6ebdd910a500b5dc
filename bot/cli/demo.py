"""``tsbot demo``: the sandbox, the local Slack stand-in and the real bot in one process, with a prompt.

Console lines:

``/ts …``            run a slash command as the current user in the current channel
``click LABEL``      press the newest button with that label visible to the current user
``submit [REASON]``  submit the modal a button opened (its reason field set to REASON)
``as USER_ID``       switch identity (``U012ADMIN`` admin, ``U0OPS1``/``U0OPS2`` on-call operators,
                     ``U0NOC1`` NOC analyst)
``in CHANNEL_ID``    switch channel (``C0OPS`` ops, ``C0NOC`` the NOC channel: viewer)
``wait SECONDS``     let time pass (callbacks arrive, messages update)
``reach ID up|down`` flip a sandbox device's reachability
``portal ID CHANGE [BY]`` change a sandbox line outside the bot, as in ThingSpace's portal (CHANGE:
                     Suspend, Resume, Activate, Deactivate, ChangeMdn; BY: who, default "portal")
``lose N``           the sandbox loses the next N callbacks (the bot asks ThingSpace after a while)
``help``, ``quit``

Every Slack message is printed as it is posted or updated, prefixed with channel and thread.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

__all__ = ["Console", "add_arguments", "run"]

PROMPT_HELP = __doc__.split("Console lines:", 1)[1].rsplit("Every Slack message", 1)[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--script", metavar="FILE", help="run console lines from FILE ('-' for stdin), then exit"
    )
    parser.add_argument(
        "--devices", type=_devices, default=200, help="sandbox fleet size, 1 to 1,000,000 (default 200)"
    )
    parser.add_argument("--seed", type=int, default=1, help="sandbox fleet seed (default 1)")
    parser.add_argument(
        "--db", metavar="PATH", help="keep the bot's database here (default: a temporary folder)"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="how long --script waits for requests"
    )


#: Above this many lines the demo does not wait for the bot's first directory sync: it says so and
#: gives the prompt at once (a million lines take minutes to read; commands work meanwhile).
SYNC_IN_BACKGROUND_ABOVE = 20_000
#: lines per second the bot's directory sync reads from the sandbox on an ordinary machine
SYNC_RATE = 1_550  # a 1,000,000-line sync with no commands: 643 s on 2 cores


def _devices(text: str) -> int:
    from bot.sandbox.fleet import MAX_DEVICES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEVICES:,}")
    return value


class Console:
    """Runs console lines against a :class:`~bot.local_stack.LocalStack` and prints what Slack shows."""

    def __init__(self, stack: object, out: TextIO) -> None:
        from bot.local_stack import LocalStack

        assert isinstance(stack, LocalStack)
        self.stack = stack
        self.out = out
        self.user = "U012ADMIN"
        self.channel = "C0OPS"
        self._lock = threading.Lock()
        self.errors = 0

    def print(self, text: str) -> None:
        with self._lock:
            self.out.write(text.rstrip() + "\n")
            self.out.flush()

    def attach(self) -> None:
        from bot.console.render import render_message

        def show(event: object) -> None:
            try:
                self.print(render_message(event))  # type: ignore[arg-type]
                self._save_file(event)
            except Exception as exc:  # noqa: BLE001 - never let rendering kill the demo
                self.print(f"(could not render a message: {type(exc).__name__})")

        self.stack.standin.on_event(show)

    def _save_file(self, event: object) -> None:
        """A message that shares a file (a usage chart): the file is written next to the demo's
        database and its path printed, so it can be opened."""
        message = getattr(event, "message", None)
        if getattr(event, "kind", "") != "post" or message is None:
            return
        upload = self.stack.standin.upload_for(message)
        if upload is None:
            return
        folder = self.stack.workdir / "files"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{upload.file_id}-{Path(upload.name).name}"
        path.write_bytes(upload.data)
        self.print(f"  📎 chart saved to {path}")

    def run_line(self, line: str) -> bool:
        """Run one line; False means quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        self.print(f"[{self.user} in {self.channel}] {line}")
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in {"quit", "exit"}:
            return False
        if word == "help":
            self.print(PROMPT_HELP.strip("\n"))
            return True
        if line.startswith("/"):
            command, _, text = line.partition(" ")
            response = self.stack.driver.command(text, user=self.user, channel=self.channel, command=command)  # type: ignore[union-attr]
            if response.status_code != 200:
                self.errors += 1
                self.print(
                    f"  ! Slack would show an error: HTTP {response.status_code} {response.text[:200]}"
                )
            return True
        if word == "click":
            label = rest.strip().strip('"')
            try:
                response = self.stack.click(label, user=self.user)
            except LookupError as exc:
                self.errors += 1
                self.print(f"  ! {exc}")
                return True
            if response.status_code != 200:
                self.errors += 1
                self.print(f"  ! click answered HTTP {response.status_code}")
            self._show_modals()
            return True
        if word == "submit":
            reason = rest.strip().strip('"')
            try:
                response = self.stack.driver.submit_modal(  # type: ignore[union-attr]
                    user=self.user, values={"reason": reason} if reason else None
                )
            except LookupError as exc:
                self.errors += 1
                self.print(f"  ! {exc}")
                return True
            if response.content.strip():
                for block_id, message in (response.json().get("errors") or {}).items():
                    self.print(f"  ! {block_id}: {message}")
            else:
                self.print("  (modal submitted)")
            return True
        if word == "as":
            self.user = rest.strip() or self.user
            self.print(f"  now acting as {self.user}")
            return True
        if word == "in":
            self.channel = rest.strip().lstrip("#") or self.channel
            self.print(f"  now in {self.channel}")
            return True
        if word == "wait":
            try:
                seconds = float(rest.strip() or "1")
            except ValueError:
                self.print("  ! wait takes a number of seconds, e.g. wait 5")
                return True
            time.sleep(max(0.0, min(seconds, 3600.0)))
            return True
        if word == "lose":
            try:
                count = int(rest.strip() or "1")
                self.stack.sandbox.drop_callbacks(count)
            except ValueError:
                self.print("  ! usage: lose N (a number of callbacks, at least 1)")
                return True
            self.print(f"  sandbox: the next {count} callback(s) will be lost")
            return True
        if word == "reach":
            try:
                device, state = shlex.split(rest)
            except ValueError:
                self.print("  ! usage: reach ID up|down")
                return True
            if state.lower() not in {"up", "down"}:
                self.print("  ! usage: reach ID up|down")
                return True
            try:
                self.stack.sandbox.set_reachability(device, state.lower() == "up")
            except (KeyError, ValueError, LookupError) as exc:
                self.print(f"  ! {exc}")
                return True
            self.print(
                f"  sandbox: {device} is now {'reachable' if state.lower() == 'up' else 'unreachable'}"
            )
            return True
        if word == "portal":
            return self._portal(rest)
        self.print(f"  ! not a console line: {word!r}. Type help.")
        return True

    def _portal(self, rest: str) -> bool:
        """``portal ID CHANGE [BY]``: the sandbox's ExternalProvisioningChanges notice."""
        from bot.sandbox.core import EXTERNAL_CHANGE_TYPES
        from bot.thingspace.shapes import EXTERNAL_PROVISIONING_CHANGES

        usage = f"  ! usage: portal ID {'|'.join(EXTERNAL_CHANGE_TYPES)} [BY]"
        try:
            words = shlex.split(rest)
        except ValueError:
            words = []
        if len(words) not in (2, 3):
            self.print(usage)
            return True
        device, change = words[0], words[1]
        by = words[2] if len(words) == 3 else "portal"
        change = next((c for c in EXTERNAL_CHANGE_TYPES if c.lower() == change.lower()), change)
        if change not in EXTERNAL_CHANGE_TYPES:
            self.print(usage)
            return True
        try:
            self.stack.sandbox.notify(EXTERNAL_PROVISIONING_CHANGES, device, change=change, by=by)
        except (KeyError, ValueError, LookupError) as exc:
            self.print(f"  ! {exc}")
            return True
        self.print(f"  sandbox: {by} made the change {change} on {device} in ThingSpace's portal")
        return True

    def _show_modals(self) -> None:
        """A modal the click opened, as the person would see it."""
        from bot.console.render import render_blocks

        for view in self.stack.standin.open_modals(self.user)[-1:]:
            title = (view.get("title") or {}).get("text", "")
            self.print(f"  ┌ modal for {self.user}: {title}")
            for line in render_blocks(view.get("blocks", [])):
                self.print(f"  │ {line}")
            submit = (view.get("submit") or {}).get("text", "Submit")
            self.print(f"  └ [ {submit} ]  [ Cancel ]   (submit [REASON] to send it)")

    def run_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if not self.run_line(line):
                break
            self.stack.settle(timeout=10)


def _read_script(path: str) -> list[str] | str:
    """The script's lines, or what is wrong with it (checked before anything starts)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        return f"cannot read the script {path}: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return f"the script {path} is not UTF-8 text"


def run(args: argparse.Namespace) -> int:
    from bot.core.logs import configure_logging
    from bot.local_stack import LocalStack

    script: list[str] | None = None
    if args.script and args.script != "-":
        read = _read_script(args.script)
        if isinstance(read, str):
            print(f"tsbot demo: {read}", file=sys.stderr)
            return 2
        script = read
    configure_logging("WARNING", json=False)
    out = sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="tsbot-demo-"))
    out.write(f"Starting the ThingSpace sandbox ({args.devices} lines), the Slack stand-in and the bot…\n")
    out.flush()
    from bot.core.reachability import DEMO_SETTINGS

    background = args.devices > SYNC_IN_BACKGROUND_ABOVE
    stack = LocalStack(
        workdir,
        devices=args.devices,
        seed=args.seed,
        db_path=args.db,
        settings_overrides=dict(DEMO_SETTINGS),
        sync_wait=0.0 if background else 60.0,
    )
    started = time.monotonic()
    stack.start()
    console = Console(stack, out)
    console.attach()
    out.write(
        f"Ready. Sandbox {stack.sandbox_server.url} · Slack stand-in {stack.standin.base_url} · bot {stack.bot_url}\n"
        "You are U012ADMIN (admin) in #C0OPS. Try: /ts find 9708   /ts help   help\n"
    )
    if background:
        minutes = max(1, round(args.devices / SYNC_RATE / 60))
        out.write(
            f"The bot is reading the sandbox's {args.devices:,} lines into its directory in the background "
            f"(about {minutes} min); commands work meanwhile, and find, group: and label targets see "
            "the lines read so far. A line below says when it is done.\n"
        )
        threading.Thread(
            target=_say_when_synced, args=(stack, console, started), name="demo-sync-notice", daemon=True
        ).start()
    out.flush()
    try:
        if args.script:
            console.run_lines(sys.stdin if script is None else script)
            settled = stack.settle(timeout=args.settle_timeout)
            if not settled:
                out.write("! some requests had not settled when the script ended\n")
                return 1
            return 1 if console.errors else 0
        while True:
            try:
                line = input("tsbot> ")
            except EOFError:
                break
            if not console.run_line(line):
                break
        return 0
    finally:
        stack.stop()


def _say_when_synced(stack: object, console: Console, started: float) -> None:
    """Print one line when the bot's first directory sync has finished (large demo fleets)."""
    from bot.local_stack import LocalStack

    assert isinstance(stack, LocalStack)
    runtime = stack.runtime
    if runtime is None:
        return
    runtime.directory_synced.wait()
    console.print(f"\n(directory sync finished after {time.monotonic() - started:.0f} s)")
