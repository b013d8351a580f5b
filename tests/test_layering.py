"""The rooms of harness/ import one way (harness/__init__.py ROOMS), with no circle.

The import graph is built from the source with ast, imports inside functions included: a
deferred import hides a circle from Python but not from this test. An import of a room that
comes later in ROOMS than the importer's own is an upward import and fails; so does any
circle among the modules, within a room or across rooms.
"""

import ast
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(name: str) -> str | None:
    """The harness module a dotted name lives in: the longest prefix that is a file or a
    package (`harness.sweep.train.start` -> harness.sweep.train); None outside harness."""
    parts = name.split(".")
    if parts[0] != "harness":
        return None
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:n])
    return None


def imports_of(path: Path) -> set[str]:
    """The harness modules `path` imports, anywhere in it (relative imports resolved)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from harness.config import schema` imports the module harness.config.schema;
            # `from harness.config import load` imports the package harness.config
            names = [f"{base}.{a.name}" if resolve(f"{base}.{a.name}") == f"{base}.{a.name}"
                     else base for a in node.names]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target and target != me and target != "harness":
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in HARNESS.rglob("*.py")}


def room(module: str) -> str:
    """harness.sweep.train -> run; harness.__main__ -> cli (it only calls cli.main)."""
    head = module.split(".")[1]
    return "cli" if head == "__main__" else head


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(harness.ROOMS)}
    bad = []
    for source, targets in sorted(edges.items()):
        if source == "harness":
            continue
        for target in sorted(targets):
            if rank[room(target)] > rank[room(source)]:
                bad.append(f"{source} imports {target}: {room(target)} comes after "
                           f"{room(source)} in harness.ROOMS")
    return bad


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle found by a depth-first search (each reported once, from where found)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_belongs_to_a_room():
    rooms = {room(m) for m in graph() if m != "harness"}
    assert rooms <= set(harness.ROOMS), rooms - set(harness.ROOMS)


def test_no_room_imports_a_later_one():
    assert not upward_imports(graph()), "\n".join(upward_imports(graph()))


def test_no_circle_of_imports():
    found = circles(graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_checks_catch_a_planted_upward_import_and_a_circle():
    edges = graph()
    planted = {**edges, "harness.data.tasks.base": edges["harness.data.tasks.base"]
               | {"harness.sweep.train"}}
    assert any("harness.data.tasks.base imports harness.sweep.train" in line
               for line in upward_imports(planted))
    # a deferred import back from train to the runner that imports it: a circle
    planted["harness.sweep.train"] = edges["harness.sweep.train"] | {"harness.sweep.runner"}
    assert circles(planted)


def test_the_graph_sees_imports_inside_functions():
    # cli imports each command's room inside main(): the walk must see it or it proves nothing
    assert {"harness.sweep.runner", "harness.reporting.report", "harness.debug.check"} <= \
        graph()["harness.cli"]


def test_each_room_says_what_it_owns_and_may_import():
    for name in harness.ROOMS:
        package = HARNESS / name / "__init__.py"
        module = HARNESS / f"{name}.py"
        doc = ast.get_docstring(ast.parse((package if package.exists() else module)
                                          .read_text()))
        assert doc, f"harness/{name} has no docstring"
        if package.exists():
            assert "Imports:" in doc, f"harness/{name}/__init__.py does not say what it imports"
