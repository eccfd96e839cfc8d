"""The house rules for modules: imports run one way (no cycles) and no module grows past 600 lines.

Imports are read with ``ast``, not by importing: every ``import``/``from … import`` of a
module under ``xmppd/`` (and ``bridges/``) counts, at module level and inside functions
alike, so a function-local import cannot hide a cycle. Imports under
``if TYPE_CHECKING:`` are left out: they never run, they only name types for the checker.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``
(its ``__init__``). The implicit import of a parent package is not an edge: a package's
``__init__`` that re-exports from its own modules would otherwise form a cycle with any
of them that imports a sibling.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("xmppd", "bridges")
MAX_LINES = 600
#: Modules allowed past MAX_LINES while work in progress splits them; each is to leave.
TOO_LONG_FOR_NOW: set[str] = set()


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, skipping ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the checked modules it imports."""
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, is_package, node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "xmppd.router" in graph["xmppd.server"]
    assert "xmppd.stream.c2s" in graph


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_would_catch_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_and_type_checking_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import xmppd.server\n"
        "def f():\n    import xmppd.router\n"
    )
    names = [a.name for node in _imports(tree) if isinstance(node, ast.Import) for a in node.names]
    assert names == ["xmppd.router"]


def test_modules_are_short() -> None:
    too_long = []
    for path in module_files().values():
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and relative not in TOO_LONG_FOR_NOW:
            too_long.append(f"{relative}: {lines} lines")
    assert not too_long, f"over {MAX_LINES} lines: " + ", ".join(sorted(too_long))


#: ARCHITECTURE.md's layers, top to bottom; a module belongs to its longest matching prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("xmppd.cli", "xmppd.cli_import", "xmppd.__main__", "xmppd.cli_export"),
    ("xmppd.server",),
    (
        "xmppd.reload",
        "xmppd.admin",
        "xmppd.migrate",
        "xmppd.metrics",
        "xmppd.http",
        "xmppd.transport",
        "xmppd.bosh",
    ),
    ("xmppd.services", "xmppd.auth", "xmppd.muc.service", "xmppd.muc.forum_sync"),
    ("xmppd.router", "xmppd.session", "xmppd.observers"),
    (
        "xmppd.stream",
        "xmppd.xml",
        "xmppd.muc",
        "xmppd.pubsub",
        "xmppd.mam",
        "xmppd.upload",
        "xmppd.storage",
        "xmppd.auth.base",
        "xmppd.auth.scram",
    ),
    (
        "xmppd.jid",
        "xmppd.settings",
        "xmppd.config",
        "xmppd.bosh.config",
        "xmppd.muc.config",
        "xmppd.pubsub.config",
        "xmppd.pubsub.names",
        "xmppd.services.account_config",
        "xmppd.services.push_config",
        "xmppd.mam.config",
        "xmppd.upload.config",
        "xmppd.stream.csi_config",
        "xmppd.memory",
        "xmppd.private_files",
        "xmppd.unix_socket",
        "xmppd.web",
        "xmppd",
    ),
)

#: Imports that point up a layer on purpose (importer, imported): small values shared
#: downwards. A new entry needs a reason here; most new ones mean code is in the wrong layer.
UPWARD_ALLOWED = {
    # the login limiter groups addresses exactly as connection admission does
    ("xmppd.auth.ratelimit", "xmppd.transport.admission"),
    # offline delivery reads a transport's write progress to know what was written
    ("xmppd.services.offline", "xmppd.transport.progress"),
    # metrics are handed to the parts that count (one registry per server)
    ("xmppd.muc.service", "xmppd.metrics"),
    ("xmppd.storage.aio", "xmppd.metrics"),
}


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def test_imports_run_down_the_layers() -> None:
    upward = []
    for importer, imported in sorted(import_graph().items()):
        mine = layer_of(importer)
        for target in sorted(imported):
            theirs = layer_of(target)
            if mine is None or theirs is None or theirs >= mine:
                continue
            if (importer, target) not in UPWARD_ALLOWED:
                upward.append(f"{importer} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(upward)


def test_every_xmppd_module_has_a_layer() -> None:
    assert [m for m in import_graph() if m.startswith("xmppd") and layer_of(m) is None] == []


def test_a_module_takes_its_longest_prefix_layer() -> None:
    assert layer_of("xmppd.muc.service") == 3 and layer_of("xmppd.muc.room") == 5
    assert layer_of("xmppd.bosh.config") == 6 and layer_of("xmppd.bosh.manager") == 2
    assert layer_of("xmppd.server") < layer_of("xmppd.router")  # type: ignore[operator]
