"""The layout's rules, checked on the source with ast (imports inside functions and under
``TYPE_CHECKING`` count: a type-only import is still a dependency a reader must follow).

Tiers, imports pointing down only:

* runtime tier — ``bot.app`` (the composition root), ``bot.slack``, ``bot.intake``, ``bot.inbox``,
  ``bot.outbox``, ``bot.worker``, ``bot.scheduler``, ``bot.audit``, ``bot.cli``, ``bot.parts``,
  ``bot.local_stack``: threads, HTTP, wiring;
* ``commands``: the verb registry, grammar, policy, one module per command family;
* core tier — ``bot.core``, ``bot.render``, ``bot.thingspace``: no threads, no Slack client;
* ``storage``: sqlite-utils and the standard library only.

``bot.sandbox`` and ``bot.console`` are separate product parts (the ThingSpace simulator and the
local Slack stand-in) and import only what they are allowed below.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
PACKAGES = ("bot", "commands", "storage")

CORE = ("bot.core", "bot.render", "bot.thingspace")
RUNTIME = (
    "bot.app",
    "bot.slack",
    "bot.intake",
    "bot.inbox",
    "bot.outbox",
    "bot.worker",
    "bot.scheduler",
    "bot.audit",
    "bot.cli",
    "bot.parts",
    "bot.local_stack",
)
#: every module of bot/ belongs to exactly one of these (or is the package itself)
KNOWN = (*CORE, *RUNTIME, "bot.sandbox", "bot.console", "bot.serving", "bot.__main__")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name *path* imports, anywhere in the file, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # ``from bot.core import config`` imports the module bot.core.config (its package
                # is initialised by any import of a submodule, so that is no edge of its own);
                # ``from bot.core.config import Settings`` imports bot.core.config
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _own(name: str) -> str | None:
    """The module of ours that *name* refers to (its longest known prefix), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = {own for name in _imported_names(path, module) if (own := _own(name))}
        deps.discard(module)
        graph[module] = deps
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root, edges_of_root in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(edges_of_root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_checker_sees_a_cycle() -> None:
    """The cycle finder itself: a -> b -> c -> a is one cycle, d alone is none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    """No import cycle among bot, commands and storage modules (function-level and type-only
    imports included)."""
    assert not _cycles(GRAPH), "import cycles:\n" + "\n".join(" -> ".join(c) for c in _cycles(GRAPH))


def test_every_bot_module_has_a_tier() -> None:
    """A new module of bot/ goes into a tier's package, so the rules below cover it."""
    strays = [m for m in MODULES if m.startswith("bot.") and not _within(m, KNOWN)]
    assert not strays, f"modules outside the tiers: {strays}"


def _offenders(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {dep}"
        for module, deps in GRAPH.items()
        if _within(module, sources)
        for dep in deps
        if _within(dep, forbidden)
    )


def test_storage_imports_nothing_from_bot_or_commands() -> None:
    assert not _offenders(("storage",), ("bot", "commands"))


def test_commands_and_the_core_tier_never_import_the_runtime_tier() -> None:
    assert not _offenders(("commands", *CORE), RUNTIME)


def test_the_core_tier_never_imports_commands() -> None:
    assert not _offenders(CORE, ("commands",))


def test_only_the_entry_points_import_the_composition_root() -> None:
    """bot.app is built by the CLI and the embedded stack, never imported by the parts it composes."""
    entry_points = ("bot.cli", "bot.local_stack")
    assert not [
        module for module, deps in GRAPH.items() if "bot.app" in deps and not _within(module, entry_points)
    ]


#: third-party and own packages each separate part may import (the standard library always)
ALLOWED = {
    "storage": ("sqlite_utils", "storage"),
    "bot.thingspace": ("httpx", "bot.thingspace", "bot.core.redact", "storage.login_gate_state"),
    "bot.sandbox": ("starlette", "httpx", "uvicorn", "bot.sandbox", "bot.thingspace.shapes", "bot.serving"),
    "bot.console": ("starlette", "httpx", "slack_sdk.signature", "bot.console", "bot.serving", "uvicorn"),
}


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    return top in STDLIB or top == "__future__" or _within(name, allowed)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    """storage knows nothing of Slack or HTTP; the ThingSpace client nothing of Slack; the sandbox
    and the stand-in only their own parts and the proposed wire shapes."""
    bad = sorted(
        f"{module}: {name}"
        for module, path in MODULES.items()
        if _within(module, (package,))
        for name in _imported_names(path, module)
        if not _allowed(name, ALLOWED[package]) and not _allowed(name.rpartition(".")[0], ALLOWED[package])
    )
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_only_the_cli_reads_the_environment() -> None:
    """Settings come from the environment in one place (the CLI, through bot.core.config's loader
    that it calls); everything else is given its settings."""
    readers = []
    for module, path in MODULES.items():
        if _within(module, ("bot.cli", "bot.core.config")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"environ", "getenv", "environb"}
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                readers.append(f"{module}:{node.lineno}")
    assert not readers, f"os.environ read outside the CLI: {readers}"


def test_importing_a_module_registers_nothing() -> None:
    """No module writes into another module's globals at import: no top-level statement other than
    definitions, imports, assignments to its own names, and docstrings."""
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            if isinstance(node, ast.Expr | ast.For | ast.While | ast.With | ast.AugAssign):
                offenders.append(f"{module}:{node.lineno} {type(node).__name__}")
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Subscript | ast.Attribute):
                        offenders.append(f"{module}:{node.lineno} assigns {ast.unparse(target)}")
            elif (
                isinstance(node, ast.If)
                and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                and ast.unparse(node.test) != "__name__ == '__main__'"
            ):
                offenders.append(f"{module}:{node.lineno} if")
    assert not offenders, "import-time effects:\n" + "\n".join(offenders)
