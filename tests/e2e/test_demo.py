"""`tsbot demo --script`: the README's main command, run as a user would (a real process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STORY = """\
/ts find 9708
/ts suspend iccid:89148000000800139708 --reason "stolen"
click Confirm
wait 1
/ts status iccid:89148000000800139708
/ts sms iccid:89148000005591494943 "REBOOT"
wait 1
as U0NOC1
in C0NOC
/ts suspend iccid:89148000005591494943
/ts help
"""


def test_demo_script_runs_the_first_story(tmp_path: Path) -> None:
    """Suspend, confirm, status and an SMS run through the demo with readable output and exit 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "demo",
            "--script",
            "-",
            "--devices",
            "60",
            "--db",
            str(tmp_path / "demo.db"),
        ],
        input=STORY,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 device match `9708`" in out
    assert "[ Confirm ]" in out
    assert "is suspending demo-usage-spike" in out or "Suspended demo-usage-spike" in out
    assert "is suspended until" in out  # the CarrierService callback, in the thread
    assert "— suspended" in out  # the status card
    assert "sent an SMS to demo-healthy" in out
    assert "needs the *operator* role" in out  # the NOC viewer is refused politely
    assert "Traceback" not in out + result.stderr


def test_demo_with_a_missing_script_says_so_before_starting_anything(tmp_path: Path) -> None:
    """--script naming a file that is not there: a clear line, exit 2, nothing started, no traceback."""
    missing = tmp_path / "missing.txt"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--script", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"tsbot demo: cannot read the script {missing}: No such file or directory" in result.stderr
    assert "Starting" not in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_a_million_line_demo_gives_the_prompt_at_once_and_syncs_in_the_background(tmp_path: Path) -> None:
    """--devices 1000000: the sandbox starts in seconds, the demo says the directory is being read
    in the background instead of blocking the prompt, commands answer meanwhile, and it quits
    cleanly mid-sync; above the limit is a clear usage error."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "demo",
            "--script",
            "-",
            "--devices",
            "1000000",
            "--db",
            str(tmp_path / "d.db"),
        ],
        input="/ts help\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Starting the ThingSpace sandbox (1000000 lines)" in out
    assert "reading the sandbox's 1,000,000 lines into its directory in the background" in out
    assert "/ts find" in out  # the help card answered while the sync runs
    assert "Traceback" not in out + result.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--devices", "1000001"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "must be between 1 and 1,000,000" in refused.stderr
