"""The house's imports point one way: no cycles, nothing imports the package facades from inside.

Every import is read (also those inside functions), since a lazy import is still a dependency.
The facades (`groundup`, `groundup.data`, `groundup.nn`, `groundup.callbacks`) only re-export:
modules inside groundup import the module that defines a name, never a facade, so the facades
stay on top of everything.
"""

import ast
from pathlib import Path

import groundup

ROOT = Path(groundup.__file__).parent
# The one import of a module above its importer: a deprecation shim that goes away in 0.3.
ALLOWED_UPWARD = {("groundup.data.loader", "groundup.data.folder")}  # DataLoaders.from_folder


def module_files() -> dict[str, Path]:
    mods = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """{module: modules of groundup it imports}, and the set of packages."""
    mods = module_files()
    packages = {m for m, f in mods.items() if f.name == "__init__.py"}
    graph = {}
    for name, f in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "groundup"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "groundup":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in mods else node.module)
        graph[name] = targets - {name} - ALLOWED_UPWARD_TARGETS.get(name, set())
    return graph, packages


ALLOWED_UPWARD_TARGETS: dict[str, set[str]] = {}
for _low, _high in ALLOWED_UPWARD:
    ALLOWED_UPWARD_TARGETS.setdefault(_low, set()).add(_high)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


FACADES = {"groundup", "groundup.callbacks", "groundup.data", "groundup.nn"}  # they only re-export


def test_no_module_imports_a_package_facade():
    graph, packages = import_graph()
    assert FACADES <= packages
    bad = sorted((m, t) for m, targets in graph.items() if m not in FACADES for t in targets if t in FACADES)
    assert not bad, f"modules importing a package facade (import the defining module instead): {bad}"


def test_callback_core_imports_nothing_of_groundup():
    graph, _ = import_graph()
    assert graph["groundup.callbacks.core"] == set()


def test_the_learner_imports_what_it_uses_at_the_top():
    tree = ast.parse((ROOT / "learner.py").read_text())
    nested = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))
              and "groundup" in (getattr(n, "module", "") or "")]
    assert not nested, "learner.py imports groundup modules inside functions"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_version_is_written_once():
    import importlib.metadata
    import tomllib

    pyproject = tomllib.loads((ROOT.parent.parent / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert groundup.__version__ == importlib.metadata.version("groundup")


def test_no_callback_touches_a_private_attribute_of_the_learner():
    """Callbacks change the loop through the Learner's public extension points, never its privates."""
    offenders = []
    for f in sorted((ROOT / "callbacks").glob("*.py")) + sorted((ROOT / "run").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and ((isinstance(node.value, ast.Attribute) and node.value.attr in ("learn", "learner"))
                         or (isinstance(node.value, ast.Name) and node.value.id in ("learn", "learner")))):
                offenders.append(f"{f.name}:{node.lineno} .{node.attr}")
    assert not offenders, offenders
