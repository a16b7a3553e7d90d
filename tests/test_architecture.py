"""The layout's rules, enforced from the source: the import graph, module and function sizes.

The graph counts every import statement in a module: top-level, inside functions (lazy) and under
TYPE_CHECKING alike, because a cycle hidden behind a lazy import is still a cycle. The README's "Layout"
section states the same rules in words.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"ledger": "forgetd.ledger", "client": "forgetd.client", "server": "forgetd.server"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Documented exceptions to the function-size rule: hot loops whose one body is the point.
LONG_FUNCTIONS_ALLOWED: frozenset[str] = frozenset()


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    name = [PACKAGES[parts[0]], *parts[1:]]
    if name[-1] == "__init__":
        name.pop()
    return ".".join(name)


def _sources() -> Iterator[tuple[str, Path]]:
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield _module_name(path), path


MODULES = dict(_sources())


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path) -> set[str]:
    """Every project module this module imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("forgetd."))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            if not target.startswith("forgetd."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES or m.startswith("forgetd.v1") or m.startswith("forgetd.oip")}


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def _edges(src_prefix: str, dst_prefix: str) -> list[str]:
    return sorted(f"{src} -> {dst}" for src, deps in GRAPH.items() if src.startswith(src_prefix)
                  for dst in deps if dst.startswith(dst_prefix))


def test_the_ledger_imports_neither_server_nor_client() -> None:
    assert _edges("forgetd.ledger", "forgetd.server") + _edges("forgetd.ledger", "forgetd.client") == []


def test_the_server_never_imports_the_client() -> None:
    assert _edges("forgetd.server", "forgetd.client") == []


def test_the_client_imports_only_the_replay_entry_point_from_the_server() -> None:
    bad = [e for e in _edges("forgetd.client", "forgetd.server") if not e.endswith("-> forgetd.server.replay")]
    assert bad == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a path of module names (first == last), or None; plain DFS with colours."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if start not in colour and (found := visit(start)) is not None:
            return found
    return None


def test_no_import_cycle_among_the_project_modules_lazy_imports_included() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    # The rule above must be able to fail: a lazy import back from the ledger into the server would close a loop.
    planted = {k: set(v) for k, v in GRAPH.items()}
    planted["forgetd.ledger.store"].add("forgetd.server.runtime.admission")
    assert "forgetd.ledger" in GRAPH["forgetd.server.runtime.admission"]  # admission -> ledger -> ledger.store
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_imports_of_sees_lazy_and_type_checking_imports() -> None:
    path = REPO / "server" / "runtime" / "slot.py"
    assert "forgetd.server.runtime.runtime" in imports_of("forgetd.server.runtime.slot", path)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{MODULES[module]} has {lines} lines; cut it by concept (at most {MAX_MODULE_LINES})"


def test_functions_stay_small() -> None:
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                name = f"{module}.{node.name}"
                if length > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS_ALLOWED:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
