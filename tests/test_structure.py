"""The shape of the package: no import circles, dependencies that point one way, and a builder that
orchestrates without knowing what kind of source it reads. Read from the source files (imports inside
functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Installed names of the source folders (pyproject.toml's package-dir).
FOLDERS = {"pretextgen": ROOT / "pretextgen", "pretextgen.pipelines": ROOT / "pipelines",
           "pretextgen.video": ROOT / "video"}


def modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in FOLDERS.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = f
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{base}" if base else up
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependencies_point_one_way():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("pretextgen.tasks"):  # tasks declare; the video package executes
            assert not any(d.startswith("pretextgen.video") for d in deps), (name, deps)
            assert not {"pretextgen.builder", "pretextgen.inspect", "pretextgen.verify"} & deps, (name, deps)
        if name.startswith(("pretextgen.video", "pretextgen.pipelines")):  # they serve the core
            assert "pretextgen.builder" not in deps, (name, deps)
        if name == "pretextgen.shards":  # the store knows no task
            assert "pretextgen.registry" not in deps


def test_the_builder_does_not_branch_on_the_source_kind():
    text = (ROOT / "pretextgen" / "builder.py").read_text()
    for phrase in ('input == "video"', 'input == "image"', "input != ", ".video"):
        assert phrase not in text, phrase


def test_every_package_folder_is_listed_for_installation():
    """pyproject.toml lists the packages one by one: a new folder (a subpackage) missing there would
    import from a checkout and be absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
