"""Import rules of design.md §2, checked on the source with ast.

* ``storage`` knows nothing of Slack, ThingSpace or HTTP: sqlite-utils and the standard library.
* ``bot.thingspace`` knows nothing of Slack: httpx, the standard library, and the pure leaf helper
  ``bot.redact`` (identifier masking).
* ``bot.sandbox`` is a separate product part: Starlette, httpx, the standard library, and only the
  proposed wire shapes from ``bot.thingspace.shapes`` (so both sides spell them one way).
* ``bot.console`` (the Slack stand-in): Starlette, httpx, slack_sdk's signature helper, the
  standard library, and ``bot.serving``.
* Only the entry points (CLI, server, demo, local stack) import the composition root ``bot.app``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    return top in STDLIB or top == "__future__" or any(name == a or name.startswith(a + ".") for a in allowed)


RULES = {
    "storage": ("sqlite_utils", "storage"),
    "bot.thingspace": ("httpx", "bot.thingspace", "bot.core.redact"),
    "bot.sandbox": ("starlette", "httpx", "uvicorn", "bot.sandbox", "bot.thingspace.shapes", "bot.serving"),
    "bot.console": ("starlette", "httpx", "slack_sdk.signature", "bot.console", "bot.serving", "uvicorn"),
}


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_only_what_it_may(package: str) -> None:
    """Each layered package imports only its allowed dependencies."""
    files = _files(package)
    assert files, f"{package} has no modules"
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if not _allowed(name, RULES[package])
    }
    assert not bad, "forbidden imports:\n" + "\n".join(sorted(bad))


def test_only_entry_points_import_the_composition_root() -> None:
    """bot.app is imported by the CLI entry points and tests, never by the parts it composes."""
    entry_points = {
        "bot/server.py",
        "bot/stack.py",
        "bot/demo.py",
        "bot/cli.py",
        "bot/app.py",
        "bot/check.py",
        "bot/socket_mode.py",
        "bot/callbacks_cli.py",
    }
    offenders = []
    for package in ("bot", "commands", "storage"):
        for path in _files(package):
            rel = str(path.relative_to(ROOT))
            if rel in entry_points:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                # ``if TYPE_CHECKING:`` imports are annotations only
                if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                    node.body = []
            names: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module)
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
            if "bot.app" in names:
                offenders.append(rel)
    assert not offenders, f"import bot.app: {offenders}"
