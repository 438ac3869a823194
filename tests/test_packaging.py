"""What the source tree promises about packaging: the distribution name, install hints
that name it, and the files an installed nncore carries."""
import importlib
import inspect
import re
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


TYPED_MODULES = ["nncore.datasets", "nncore.init", "nncore._threads", "nncore.losses",
                 "nncore.gradcheck"]


def _public_callables(module):
    """(name, function) of the module's own public functions, classes' public methods
    included (the classes themselves stand for their __init__)."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, inspect.unwrap(obj)
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member) and (not attr.startswith("_") or
                                                   attr in ("__init__", "__call__")):
                    yield f"{name}.{attr}", member


@pytest.mark.parametrize("module_name", TYPED_MODULES)
def test_public_api_is_annotated(module_name):
    """Every parameter (but self and cls) and every return of the public API carries a
    type hint; py.typed tells type checkers to read them."""
    module = importlib.import_module(module_name)
    found, missing = [], []
    for name, func in _public_callables(module):
        found.append(name)
        sig = inspect.signature(func)
        missing += [f"{name}({p})" for p in sig.parameters
                    if p not in ("self", "cls") and sig.parameters[p].annotation is
                    inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{name} -> ?")
    assert found and not missing, missing


def test_py_typed_ships_with_the_package():
    assert (Path(nncore.__file__).parent / "py.typed").is_file()
