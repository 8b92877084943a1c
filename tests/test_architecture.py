"""The shape of the package: no import cycles, a command line that uses the public API
only, no private names borrowed across modules, modules of a readable size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import xview2_ingest

PACKAGE = Path(xview2_ingest.__file__).parent
ROOT = "xview2_ingest"
CLI_MAY_IMPORT = {ROOT, f"{ROOT}.errors", f"{ROOT}.events", f"{ROOT}.reports", f"{ROOT}.settings"}
MAX_LINES = 800


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in ``module``, including
    those inside functions: a cycle through a lazy import is still a cycle."""
    path = MODULES[module]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith(ROOT)]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, path, node)
            if not target.startswith(ROOT):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            found += [(s, []) for s in submodules]
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            if rest:
                found.append((target, rest))
    return found


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in imports(m) if t in MODULES and t != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_the_command_line_uses_the_public_api_only() -> None:
    for module in (m for m in MODULES if m.startswith(f"{ROOT}.cli")):
        for target, _ in imports(module):
            if target.startswith(f"{ROOT}.cli"):
                continue
            assert target in CLI_MAY_IMPORT, f"{module} imports {target}"


def test_no_private_names_across_modules() -> None:
    for module in MODULES:
        for target, names in imports(module):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private or target == module, f"{module} takes {private} from {target}"


def test_public_api_covers_the_pipeline() -> None:
    for name in ("download", "status", "clean", "extract", "build_index", "dataset_stats"):
        assert callable(getattr(xview2_ingest, name)), name
    assert callable(xview2_ingest.ingest)


def test_modules_stay_readable() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_commands_start_without_the_heavy_libraries() -> None:
    """A download imports neither pyarrow, numpy nor werkzeug: the index, preparation
    and demo stages load them when used, and their public names still resolve."""
    probe = (
        "import sys, xview2_ingest, xview2_ingest.cli.app\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'numpy', 'werkzeug'})\n"
        "print(','.join(heavy))\n"
        "xview2_ingest.build_index, xview2_ingest.make_layout, xview2_ingest.DatasetStats\n"
        "print('numpy' in sys.modules and 'pyarrow' in sys.modules)\n"
        "import xview2_ingest.demo.server\n"
        "print(callable(xview2_ingest.demo))\n"  # the function, not the subpackage
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "", f"imported at start: {out[0]}"
    assert out[1] == "True"
    assert out[2] == "True"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = xview2_ingest.nothing_here  # type: ignore[attr-defined]
