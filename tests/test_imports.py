"""The package's import graph has no circle, counting imports inside functions too:
each module of nncore/ can be read (and imported) after the ones it uses. Imports under
`if TYPE_CHECKING:` never run (they name the types of annotations) and do not count."""
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


def _type_checking_only(tree):
    """The nodes under `if TYPE_CHECKING:` (or typing.TYPE_CHECKING), else branches aside."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING") or
                (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imports(path, known):
    """The nncore modules the file at path imports, anywhere in it but under
    `if TYPE_CHECKING:`."""
    deps = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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


def test_type_checking_imports_do_not_count(tmp_path):
    """An import for annotations only (under if TYPE_CHECKING) is no edge; its else
    branch and the rest of the file are read as ever."""
    a = tmp_path / "a.py"
    a.write_text("import typing\nfrom typing import TYPE_CHECKING\n"
                 "if TYPE_CHECKING:\n    from nncore import b\nelse:\n    import nncore.c\n"
                 "if typing.TYPE_CHECKING:\n    import nncore.d\n"
                 "def f():\n    import nncore.e\n")
    known = {f"nncore.{m}": tmp_path / f"{m}.py" for m in "abcde"}
    assert imports(a, known) == {"nncore.c", "nncore.e"}
