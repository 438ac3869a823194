"""The package's import graph has no circle, counting imports inside functions too:
each module of nncore/ can be read (and imported) after the ones it uses."""
import ast
import importlib.util
import pathlib

import nncore

PACKAGE = pathlib.Path(nncore.__file__).parent


def modules():
    """{module name: path} of the Python modules of nncore (compiled ones are leaves)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def _is_module(name, known):
    if name in known:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def imports(path, known):
    """The nncore modules the file at path imports, anywhere in it."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # from nncore import x: module nncore.x if there is one (Python or
            # compiled: a compiled one is a leaf), else a name from nncore's __init__
            names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}", known)
                     else node.module for a in node.names]
        else:
            continue
        deps.update(n for n in names if n in known)
    return deps


def test_no_import_circle():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    assert "nncore.model" in graph and graph["nncore.model"]           # the test reads it
    assert "nncore.model" in graph["nncore"]          # __init__ is a node like the others
    state = {}

    def visit(name, path):
        state[name] = "open"
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join(path + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_check_finds_a_circle(tmp_path, monkeypatch):
    """The import reading above sees imports inside functions (a made-up pair)."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from nncore import b\n")
    b.write_text("import nncore.a\n")
    known = {"nncore.a": a, "nncore.b": b}
    assert imports(a, known) == {"nncore.b"} and imports(b, known) == {"nncore.a"}
