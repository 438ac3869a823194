"""What the source tree promises about packaging: the distribution name, install hints
that name it, and the files an installed nncore carries."""
import __future__
import functools
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

import nncore

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "nncore-mlp"       # "nncore" on the package index is another project


def _distribution_name():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text[text.index("[project]"):]
    return re.search(r'^name = "([^"]+)"', project, re.M).group(1)


# `pip install`, its options, then the first requirement: nncore or nncore[extras]
# (quoted or not) and not nncore-mlp, nncore_x or a path.
WRONG_HINT = re.compile(r"""pip install((\s+-\S+)*)\s+["']?nncore(\[[^\]]*\])?["']?(?![\w-])""")


def _text_files():
    files = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "CHANGELOG.md"]
    for folder, pattern in (("docs", "*.md"), ("examples", "*"), ("nncore", "*.py"),
                            ("bench", "*.py"), (".ci", "*")):
        files += sorted((ROOT / folder).glob(pattern))
    return [f for f in files if f.is_file()]


def test_distribution_name():
    assert _distribution_name() == DISTRIBUTION


@pytest.mark.parametrize("line, wrong", [
    ('`pip install "nncore[plot]"`', True),
    ("pip install nncore.", True),
    ("pip install -U nncore", True),
    ("pip install 'nncore[test,plot]' && pytest", True),
    ('pip install "nncore-mlp[plot]"', False),
    ('pip install -e ".[plot]" in the nncore checkout', False),
    ("pip install --no-build-isolation -Cbuild-dir=build -e .", False),
])
def test_wrong_hint_pattern(line, wrong):
    assert bool(WRONG_HINT.search(line)) is wrong


def test_no_install_hint_names_the_other_project():
    """Every `pip install` in the docs, examples, messages and CI names this project
    (a path, or nncore-mlp), never the unrelated `nncore` on the index."""
    wrong = []
    for path in _text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if WRONG_HINT.search(line):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not wrong, wrong
    assert f'pip install "{DISTRIBUTION}[plot]"' in nncore.plot.INSTALL_HINT


def _extras():
    """{extra: [requirement, ...]} of [project.optional-dependencies] in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    return {m.group(1): re.findall(r'"([^"]+)"', m.group(2))
            for m in re.finditer(r"^(\w+) = \[(.*)\]$", section, re.M)}


def test_requirements_test_txt_is_the_three_extras():
    """requirements-test.txt (what CI's oldest-NumPy run installs beside the wheel) holds
    the packages of the extras the README's second command installs, same lower bounds."""
    listed = [line.strip() for line in
              (ROOT / "requirements-test.txt").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    extras = _extras()
    assert sorted(listed) == sorted(extras["test"] + extras["datasets"] + extras["plot"])
    assert 'pip install -e ".[test,datasets,plot]"' in (ROOT / "README.md").read_text(
        encoding="utf-8").split("```")[1]


def test_digits_file_is_package_data():
    data = Path(nncore.__file__).parent / "data"
    assert (data / "digits.csv.gz").stat().st_size == 57523
    assert "CC BY 4.0" in (data / "README.md").read_text(encoding="utf-8")


# The public API: nncore's exports (nncore.__all__, what nncore._config and
# nncore._threads define among them) and its public modules. Not typed: nncore.cli (the
# command line) and the private helpers.
TYPED_MODULES = ["nncore", "nncore._config", "nncore._threads", "nncore.callbacks",
                 "nncore.datasets", "nncore.distributed", "nncore.functional",
                 "nncore.gradcheck", "nncore.init", "nncore.io", "nncore.layers",
                 "nncore.losses", "nncore.model", "nncore.optim", "nncore.plot",
                 "nncore.reference", "nncore.schema", "nncore.sklearn", "nncore.training"]
# What importing a typed module needs beyond nncore's own dependencies.
NEEDS = {"nncore.sklearn": "sklearn"}
# Public callables compiled by Cython: they carry no Python annotations (type checkers
# see them as Any). Anything else public must be annotated.
COMPILED = {"nncore.openmp_enabled"}


def _functions(member):
    """The Python functions behind a class attribute: a method, a classmethod's or
    staticmethod's function, a property's getter, setter and deleter, each unwrapped
    (functools.wraps, scikit-learn's available_if)."""
    if isinstance(member, (classmethod, staticmethod)):
        member = member.__func__
    members = ([f for f in (member.fget, member.fset, member.fdel) if f is not None]
               if isinstance(member, property) else [member])
    return [f for f in map(inspect.unwrap, members) if inspect.isfunction(f)]


def _methods(cls):
    """(attr, function) of the public methods and the dunders (__init__, __call__,
    __getitem__, __enter__, ...) of cls, its own and those it inherits from nncore's
    classes (a private base class's public methods are the subclass's API)."""
    seen = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] != "nncore":
            continue
        for attr, member in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            dunder = attr.startswith("__") and attr.endswith("__")
            if attr.startswith("_") and not dunder:
                continue
            for func in _functions(member):
                yield attr, func


def _public_callables(module):
    """(name, callable) of the module's public API: its own public functions and
    classes, and whatever its __all__ exports from elsewhere; a class stands for its
    methods (_methods), __init__ included."""
    exported = set(getattr(module, "__all__", ()))
    for name, obj in vars(module).items():
        own = not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        if not (own or name in exported):
            continue
        if inspect.isclass(obj):
            for attr, func in _methods(obj):
                yield f"{name}.{attr}", func
        elif inspect.isroutine(obj):
            yield name, inspect.unwrap(obj)


def _missing_annotations(name, func):
    sig = inspect.signature(func)
    missing = [f"{name}({p})" for p in sig.parameters
               if p not in ("self", "cls") and sig.parameters[p].annotation is
               inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append(f"{name} -> ?")
    return missing


@pytest.mark.parametrize("module_name", TYPED_MODULES)
def test_public_api_is_annotated(module_name):
    """Every parameter (but self and cls) and every return of the public API carries a
    type hint; py.typed tells type checkers to read them. The modules that define
    functions take `from __future__ import annotations`: hints such as `int | None`
    are then never evaluated, so they cost nothing and work on Python 3.9."""
    if module_name in NEEDS:
        pytest.importorskip(NEEDS[module_name])
    module = importlib.import_module(module_name)
    found, missing = [], []
    for name, func in _public_callables(module):
        qualified = f"{module_name}.{name}"
        found.append(name)
        if qualified in COMPILED:
            assert not inspect.isfunction(func), f"{qualified} is a Python function"
            continue
        missing += _missing_annotations(name, func)
    assert found and not missing, missing
    own = [obj for obj in vars(module).values()
           if getattr(obj, "__module__", None) == module_name]
    if any(inspect.isfunction(obj) or inspect.isclass(obj) for obj in own):
        assert getattr(module, "annotations", None) is __future__.annotations, \
            f"{module_name} lacks `from __future__ import annotations`"


def test_annotation_check_sees_inherited_and_wrapped_methods():
    """The check reaches what a class inherits from a private base, dunders, property
    setters, wrapped methods and what __all__ exports from elsewhere, and reports each
    missing hint."""
    module = types.ModuleType("nncore._probe")

    def wrap(f):
        @functools.wraps(f)
        def g(*args, **kwargs):
            return f(*args, **kwargs)
        return g

    class _Base:
        def inherited(self, x): ...

    class Public(_Base):
        def __getitem__(self, key) -> int: ...

        @property
        def value(self) -> int: ...

        @value.setter
        def value(self, v) -> None: ...

        @wrap
        def wrapped(self, x: int): ...

        def _private(self, x): ...

    def helper(a): ...                  # defined elsewhere, exported by __all__

    for cls in (_Base, Public):
        cls.__module__ = module.__name__
    module.Public, module._Base, module.helper = Public, _Base, helper
    module.__all__ = ["Public", "helper"]
    missing = [m for name, func in _public_callables(module)
               for m in _missing_annotations(name, func)]
    assert sorted(missing) == sorted([
        "Public.inherited(x)", "Public.inherited -> ?", "Public.__getitem__(key)",
        "Public.value(v)", "Public.wrapped -> ?", "helper(a)", "helper -> ?"])


def test_py_typed_ships_with_the_package():
    assert (Path(nncore.__file__).parent / "py.typed").is_file()
