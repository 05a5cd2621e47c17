"""The call layer's seam, checked on the source: no module of ``calls/`` imports another
in a cycle at run time, and no call module reaches for the engine (calls get their
ports, ``calls/ports.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

CALLS = Path(__file__).parents[2] / "src" / "callmask" / "calls"
# Modules that hold calls (not the engine and its start-up).
CALL_MODULES = ("base", "call", "origination", "legs", "sdp", "outcome", "control", "ports")


def runtime_imports(path: Path) -> set[str]:
    """``callmask.calls.*`` modules imported at module level, outside TYPE_CHECKING."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("callmask.calls."):
            names.add((node.module or "").rsplit(".", 1)[1])
    return names


def all_imports(path: Path) -> set[str]:
    """Every ``callmask.calls.*`` module named anywhere in the file, type-only included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("callmask.calls."):
            names.add((node.module or "").rsplit(".", 1)[1])
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, set()):
                if nxt == start:
                    return [*path, nxt]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_of_the_call_layer_imports_another_in_a_cycle() -> None:
    graph = {path.stem: runtime_imports(path) for path in CALLS.glob("*.py")}
    assert "engine" in graph and "call" in graph  # the check reads the real tree
    assert find_cycle(graph) is None


def test_calls_never_name_the_engine() -> None:
    for stem in CALL_MODULES:
        path = CALLS / f"{stem}.py"
        assert "engine" not in all_imports(path), f"{stem}.py imports the engine"
        assert "self.engine" not in path.read_text(), f"{stem}.py reaches into the engine"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
