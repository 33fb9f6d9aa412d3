"""The package's import graph, read from the source (ast): no cycle, each subpackage of ``manifold_mixup``
imports only the layers below; the repository root's forwarders reach every command."""

import ast

from conftest import ROOT

PACKAGES = ("common", "classifiers", "ssl", "gan", "analyses")
# What each package may import besides itself: ssl/ and gan/ never import each other.
ALLOWED = {
    "common": set(),
    "classifiers": {"common"},
    "ssl": {"common", "classifiers"},
    "gan": {"common"},
    "analyses": {"common", "classifiers", "ssl"},
}


PKG = ROOT / "manifold_mixup"


def module_name(path):
    """``manifold_mixup/gan/train.py`` -> ``gan.train`` (names inside the package)."""
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Modules of this package that ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        inside = [n.removeprefix("manifold_mixup.") for n in names if n.startswith("manifold_mixup.")]
        found |= {n for n in inside if n.split(".")[0] in PACKAGES}
    return found


def import_graph():
    modules = {module_name(p): p for pkg in PACKAGES for p in (PKG / pkg).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # "from gan import toy" names the module gan.toy; "from gan.toy import X" the module gan.toy
        graph[name] = {m for m in imports_of(path) if m in modules and m != name and m not in PACKAGES}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "gan.train" in graph and "common.loop" in graph  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


MOVED = ("evaluate", "spiral", "flattening", "factors", "interpolation", "decoder")  # ssl.NAME: analyses.NAME


def test_each_package_imports_only_the_layers_below_it():
    for name, imported in import_graph().items():
        top = name.split(".")[0]
        others = {m for m in imported if m.split(".")[0] not in {top, *ALLOWED[top]}}
        assert not others, f"{name} imports {sorted(others)}"


def test_checkpoint_readers_do_not_import_the_trainer():
    graph = import_graph()
    for reader in ("gan.sample", "gan.score", "analyses.evaluate"):
        reachable, todo = set(), [reader]
        while todo:
            for m in graph[todo.pop()] - reachable:
                reachable.add(m)
                todo.append(m)
        assert "gan.train" not in reachable and "ssl.train" not in reachable, reader


def commands():
    """``X.NAME`` of every module of the package that runs as a command (has a ``__main__`` block)."""
    return {
        module_name(p)
        for pkg in PACKAGES
        for p in (PKG / pkg).glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8")
    }


def forwarded(path):
    """The module a repository-root forwarder runs (``runpy.run_module("manifold_mixup.X", ...)``)."""
    calls = [
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "run_module"
    ]
    assert len(calls) == 1, path
    return calls[0].removeprefix("manifold_mixup.")


def test_every_command_keeps_its_python_m_form_at_the_repository_root():
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py") if p.name != "__init__.py"]
    forwarders = {module_name_at_root(p): forwarded(p) for p in paths}
    assert {name for name, target in forwarders.items() if name == target} == commands()
    assert {forwarders[f"ssl.{name}"] for name in MOVED} == {f"analyses.{name}" for name in MOVED}
    assert set(forwarders.values()) <= commands()  # no forwarder to a module that is not a command


def module_name_at_root(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_the_old_analysis_commands_run_from_the_repository_root():
    from conftest import run_module

    result = run_module("ssl.spiral", "--help")  # the subprocess is what is tested: python -m ssl.NAME runs it
    assert result.returncode == 0 and "usage: python -m analyses.spiral" in result.stdout, result.stderr
