"""The package's plan holds: no import circle between jaxgenre's modules (function-level imports
included, as a lazy import only hides a circle), and imports point down the rooms only."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxgenre"

# Rooms from the bottom up: a module may import its own room and the rooms below it.
LAYERS = (
    ("core",),
    ("run", "data", "audio"),
    ("models",),
    ("pretrained",),
    # The GAN's loss holds a restored classifier (inference.judge), which is a classifier task's
    # state: one level, the module graph acyclic (test_no_import_circle).
    ("tasks", "inference"),
    ("evaluators", "transfer"),
    # Trained runs as Python objects (Classifier, StyleTransfer): what the tools and the
    # service call.
    ("api",),
    ("tools", "serve", "sweep", "train", "evaluate", "predict", "export", "evaluate_transfer",
     "import_weights", "baselines"),
)
_RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _module_name(path: pathlib.Path) -> str:
    parts = ("jaxgenre",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """{module: the jaxgenre modules it imports anywhere in its file}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("jaxgenre."))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxgenre"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":  # `python -m jaxgenre.X`: an entry point, as the tools
        return "tools"
    return parts[1] if len(parts) > 1 else "core"  # the package's own (empty) __init__


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_module_has_a_room():
    rooms = {_room(m) for m in _modules()}
    assert rooms <= set(_RANK), f"rooms missing from LAYERS: {sorted(rooms - set(_RANK))}"


def test_imports_point_down():
    upward = sorted(f"{m} -> {e}" for m, edges in import_graph().items() for e in edges
                    if _room(m) in _RANK and _RANK[_room(e)] > _RANK[_room(m)])
    assert not upward, "imports pointing up the rooms:\n" + "\n".join(upward)


@pytest.mark.parametrize("entry", ["predict", "export", "evaluate_transfer", "import_weights",
                                   "baselines", "transfer/__main__", "serve/__main__"])
def test_entry_points_are_one_line(entry):
    """Each `python -m jaxgenre.X` kept for users only hands over to jaxgenre.tools."""
    body = [n for n in ast.parse((PACKAGE / f"{entry}.py").read_text()).body
            if not isinstance(n, ast.Expr)]  # the docstring
    tool = entry.split("/")[0]
    imports = [n for n in body if isinstance(n, ast.ImportFrom)]
    assert {f"{n.module}.{a.name}" for n in imports for a in n.names} <= {
        f"jaxgenre.tools.{tool}", "jaxgenre.core.cli"}
    assert len(body) <= 4
