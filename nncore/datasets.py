"""Data sets and the small tools around them, all offline.

Generated here (no downloads): spiral, xor, curve, moons, circles (classification),
sine (regression). Loaded: digits (the 8x8 handwritten digits, shipped with
nncore), load_mnist (MNIST / Fashion-MNIST IDX files you downloaded),
load_csv (a numeric CSV file). Tools: train_test_split (alias split), one_hot,
Standardizer.

Conventions: X (n_samples, n_features) float, class labels y (n_samples,) int64,
regression targets y (n_samples, 1) float; generators take a `seed` and return
the same arrays for the same seed.
"""
from __future__ import annotations

import csv
import gzip
import math
import numbers
import os
import warnings
import zlib
from importlib import resources
from typing import TYPE_CHECKING, Literal, Mapping, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

Seed = Union[int, np.random.Generator, None]        # what np.random.default_rng takes
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
XY = Tuple[np.ndarray, np.ndarray]

__all__ = ["Standardizer", "circles", "curve", "digits", "load_csv", "load_mnist", "moons",
           "one_hot", "sine", "spiral", "split", "train_test_split", "xor"]


def _count(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _noise(value, name="noise"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _shuffled(rng, X, y):
    order = rng.permutation(X.shape[0])
    return X[order], y[order]


# ---- generated --------------------------------------------------------------

def spiral(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2, seed: Seed = 0,
           dtype: npt.DTypeLike = np.float64) -> XY:
    """The cs231n spiral: n_classes arms in 2-D that no linear classifier separates.

    Point i of arm c: r = i / n, t = c * 4 + 4 r + noise * N(0, 1),
    x = (r sin t, r cos t). Returns X (n_per_class * n_classes, 2), y (int64 labels),
    ordered by class.
    """
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    X = np.empty((n, 2), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    for c in range(n_classes):
        idx = slice(c * n_per_class, (c + 1) * n_per_class)
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.standard_normal(n_per_class) * noise
        X[idx] = np.column_stack([r * np.sin(t), r * np.cos(t)])
        y[idx] = c
    return X, y


def xor(dtype: npt.DTypeLike = np.float64) -> XY:
    """The four XOR points: X (4, 2), y (4,) with y = x0 xor x1."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    return X, np.array([0, 1, 1, 0], dtype=np.int64)


def curve(dtype: npt.DTypeLike = np.float64) -> XY:
    """The dose-response points of the study notes: low, medium, high dose -> 0, 1, 0.

    X (3, 1) = [[0], [0.5], [1]], y (3, 1) = [[0], [1], [0]].
    """
    return (np.array([[0.0], [0.5], [1.0]], dtype=dtype),
            np.array([[0.0], [1.0], [0.0]], dtype=dtype))


def moons(n: int = 200, noise: float = 0.1, seed: Seed = 0,
          dtype: npt.DTypeLike = np.float64) -> XY:
    """Two interleaving half circles in 2-D, two classes.

    Class 0: (cos t, sin t), class 1: (1 - cos t, 1/2 - sin t), t evenly spaced
    in [0, pi] (ceil(n/2) and floor(n/2) points), plus noise * N(0, 1) on each
    coordinate. Returns X (n, 2), y (n,) int64, in random order.
    """
    n = _count(n, "n", 2)
    noise = _noise(noise)
    rng = np.random.default_rng(seed)
    n0 = n - n // 2
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n // 2)
    X = np.concatenate([np.column_stack([np.cos(t0), np.sin(t0)]),
                        np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])])
    X += noise * rng.standard_normal(X.shape)
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n0, n // 2])
    X, y = _shuffled(rng, X, y)
    return X.astype(dtype, copy=False), y


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: Seed = 0,
            dtype: npt.DTypeLike = np.float64) -> XY:
    """A circle inside another in 2-D, two classes.

    Class 0 on the unit circle, class 1 on the circle of radius `factor`
    (0 < factor < 1), angles evenly spaced (ceil(n/2) and floor(n/2) points),
    plus noise * N(0, 1) on each coordinate. Returns X (n, 2), y (n,) int64,
    in random order.
    """
    n = _count(n, "n", 2)
    noise = _noise(noise)
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor < 1:
        raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
    rng = np.random.default_rng(seed)
    n0 = n - n // 2
    t0 = np.linspace(0.0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2 * np.pi, n // 2, endpoint=False)
    X = np.concatenate([np.column_stack([np.cos(t0), np.sin(t0)]),
                        factor * np.column_stack([np.cos(t1), np.sin(t1)])])
    X += noise * rng.standard_normal(X.shape)
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n0, n // 2])
    X, y = _shuffled(rng, X, y)
    return X.astype(dtype, copy=False), y


def sine(n: int = 200, noise: float = 0.1, seed: Seed = 0,
         dtype: npt.DTypeLike = np.float64) -> XY:
    """One period of a sine, for regression: x ~ U(-pi, pi), y = sin x + noise * N(0, 1).

    Returns X (n, 1), y (n, 1), both float (mse targets).
    """
    n = _count(n, "n")
    noise = _noise(noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


# ---- loaded -----------------------------------------------------------------

DIGITS_FILE = "digits.csv.gz"       # in nncore/data/; its README.md says where it comes from
DIGITS_SHAPE = (1797, 65)           # 64 gray levels 0..16, then the digit


def _data_file(name):
    """A file of nncore/data/, where the package is installed."""
    return resources.files("nncore").joinpath("data").joinpath(name)


def digits(dtype: npt.DTypeLike = np.float64) -> XY:
    """The 8x8 handwritten digits (1,797 images, 10 classes): the UCI optical digits
    test set (Alpaydin & Kaynak, CC BY 4.0), shipped with nncore as the file
    scikit-learn's load_digits reads, so the images and their order are the same.
    Read with NumPy alone; nothing is downloaded.

    Returns X (1797, 64) in [0, 1] (the 0..16 gray levels divided by 16), row i
    the 8x8 image read row by row, and y (1797,) int64 digits 0..9.
    """
    source = _data_file(DIGITS_FILE)
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if data.shape != DIGITS_SHAPE or data[:, :64].max() > 16 or data[:, 64].max() > 9:
        raise ValueError(f"{source}: not the 8x8 digits file nncore ships (shape "
                         f"{data.shape}); reinstall nncore")
    X = data[:, :64].astype(np.float64) / 16.0
    return X.astype(dtype, copy=False), data[:, 64].astype(np.int64)


IDX_IMAGES = 2051       # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols)
IDX_LABELS = 2049       # 0x00000801: unsigned bytes, 1 dimension (n,)
_MNIST_KINDS = {"train": "train", "t10k": "t10k", "test": "t10k"}


def _idx_file(folder, kind, what):
    """The path of kind-what (what: images-idx3 / labels-idx1), raw or gzipped, with
    the usual dash or the dot some mirrors use."""
    base = what.split("-")
    names = [f"{kind}-{what}-ubyte", f"{kind}-{base[0]}.{base[1]}-ubyte"]
    tried = []
    for name in names:
        for suffix in ("", ".gz"):
            path = os.path.join(folder, name + suffix)
            if os.path.isfile(path):
                return path
            tried.append(name + suffix)
    raise FileNotFoundError(f"no {kind} {base[0]} file in {folder!r}: looked for "
                            f"{', '.join(tried)}")


def _read_idx(path, magic, n_dims):
    """The dimensions and the data bytes of an IDX file of unsigned bytes."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable gzip file ({e})") from e
    header = 4 + 4 * n_dims
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX file")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        hint = {IDX_IMAGES: " (an image file)", IDX_LABELS: " (a label file)"}.get(found, "")
        raise ValueError(f"{path}: magic number {found}{hint}, expected {magic} "
                         f"({'images' if magic == IDX_IMAGES else 'labels'}): "
                         f"not the right IDX file")
    if len(data) < header:
        raise ValueError(f"{path}: the file ends inside its header ({len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims)]
    if any(d == 0 for d in dims[1:]):
        raise ValueError(f"{path}: dimensions {dims} include a zero")
    expected = header + math.prod(dims)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"{path}: {len(data)} bytes, but its header ({' x '.join(map(str, dims))}"
                         f") announces {expected}: the file is {state}")
    return dims, memoryview(data)[header:]


def load_mnist(path: PathLike, kind: str = "train", dtype: npt.DTypeLike = np.float32) -> XY:
    """MNIST or Fashion-MNIST from the IDX files you downloaded into the folder `path`.

    kind "train" reads train-images-idx3-ubyte and train-labels-idx1-ubyte, kind
    "t10k" (or "test") the t10k-* files; each may be gzipped (".gz") or raw.
    The magic numbers (2051 images, 2049 labels), the dimensions, the file sizes and
    the counts of images and labels are checked: a wrong or truncated file gives a
    ValueError naming it, a missing one FileNotFoundError.

    Returns X (n, rows * cols) = (n, 784) for MNIST, pixel / 255 in [0, 1] as
    `dtype` (float32), and y (n,) int64.
    """
    if kind not in _MNIST_KINDS:
        raise ValueError(f"kind must be 'train' or 't10k' (or 'test'), got {kind!r}")
    folder = os.fsdecode(os.fspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder {folder!r} does not exist or is not a folder")
    kind = _MNIST_KINDS[kind]
    images = _idx_file(folder, kind, "images-idx3")
    labels = _idx_file(folder, kind, "labels-idx1")
    (n, rows, cols), pixels = _read_idx(images, IDX_IMAGES, 3)
    (n_labels,), label_bytes = _read_idx(labels, IDX_LABELS, 1)
    if n != n_labels:
        raise ValueError(f"{images} holds {n} images but {labels} holds {n_labels} labels")
    X = np.frombuffer(pixels, dtype=np.uint8).reshape(n, rows * cols)
    X = X.astype(dtype) / np.asarray(255, dtype)
    y = np.frombuffer(label_bytes, dtype=np.uint8).astype(np.int64)
    return X, y


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(path, delimiter):
    """(line number, cells) of each non-blank, non-comment ('#') row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            yield reader.line_num, cells


def _csv_error(path, delimiter, has_header):
    """The first problem in the file, as a ValueError with its line number (or None)."""
    width = None
    rows = _csv_rows(path, delimiter)
    if has_header:
        next(rows)
    for line, cells in rows:
        if width is None:
            width = (len(cells), line)
        elif len(cells) != width[0]:
            return ValueError(f"{path}, line {line}: {len(cells)} fields, but line {width[1]} "
                              f"has {width[0]}")
        for col, cell in enumerate(cells, 1):
            if not cell:
                return ValueError(f"{path}, line {line}, column {col}: empty cell (a "
                                  f"missing value)")
            if not _is_number(cell):
                return ValueError(f"{path}, line {line}, column {col}: {cell[:40]!r} is not "
                                  f"a number")
            if not math.isfinite(float(cell)):
                return ValueError(f"{path}, line {line}, column {col}: {cell!r} is not a "
                                  f"finite number")
    return None


def _data_lines(f):
    """The lines of f, blank and comment lines made empty (np.loadtxt skips those, not
    lines of spaces); the line count stays, for skiprows."""
    for line in f:
        stripped = line.strip()
        yield line if stripped and not stripped.startswith("#") else "\n"


def _readable(path, read):
    """read(), a decoding or csv-module error turned into a ValueError naming path."""
    try:
        return read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text (UTF-8) CSV file ({e.reason} at byte "
                         f"{e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: {e}") from None


def read_csv(path: PathLike, *, header: bool | Literal["auto"] = "auto",
             delimiter: str = ",") -> tuple[np.ndarray, list[str] | None]:
    """A numeric CSV file as (data (n_rows, n_columns) float64, column names or None).

    header: True (the first row names the columns), False, or "auto" (a header
    if no cell of the first row is a number). Blank lines and lines starting
    with '#' are skipped. Raises ValueError naming the file and line for a row of
    another length, an empty or non-numeric cell, NaN or inf.
    """
    path = os.fsdecode(os.fspath(path))
    if header not in (True, False, "auto"):
        raise ValueError(f"header must be True, False or 'auto', got {header!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    first = _readable(path, lambda: next(_csv_rows(path, delimiter), None))
    if first is None:
        raise ValueError(f"{path}: the file holds no rows")
    has_header = (header is True or
                  (header == "auto" and not any(_is_number(c) for c in first[1])))
    names = first[1] if has_header else None

    def diagnose():
        return _readable(path, lambda: _csv_error(path, delimiter, has_header))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # "input contained no data"
            with open(path, encoding="utf-8-sig") as f:
                data = np.loadtxt(_data_lines(f), delimiter=delimiter, comments="#", ndmin=2,
                                  quotechar='"', skiprows=first[0] if has_header else 0,
                                  dtype=np.float64)
        problem = None if np.isfinite(data).all() else diagnose()
    except ValueError as e:              # the first problem, with its line, found again
        problem = diagnose() or ValueError(f"{path}: {e}")
    if problem is not None:
        raise problem
    if data.size == 0:
        raise ValueError(f"{path}: the file holds a header but no data rows")
    if names is not None and len(names) != data.shape[1]:
        raise ValueError(f"{path}, line {first[0]}: the header names {len(names)} columns, "
                         f"the rows have {data.shape[1]}")
    return data, names


def load_csv(path: PathLike, target: int | str | None = -1, *,
             header: bool | Literal["auto"] = "auto", delimiter: str = ",",
             dtype: npt.DTypeLike = np.float64,
             target_dtype: npt.DTypeLike | Literal["auto"] = "auto",
             return_classes: bool = False) -> tuple:
    """Features and targets from a CSV file of numbers (see read_csv for the format),
    whose target column may hold text class names.

    Parameters
    ----------
    path : str or os.PathLike
    target : the target column: an index (negative counts from the end), a
        column name (with a header), or None for no target (X only)
    header : True, False or "auto"
    delimiter : one character
    dtype : dtype of X
    target_dtype : "auto" (int64 class labels if every target is a whole number
        within int64's range, else the floats), or a dtype (an integer dtype must
        hold every target: ValueError otherwise). Not used for a text column.
    return_classes : also return the class names of a text target column

    A target column in which no cell is a number is a column of class names
    ("setosa", "versicolor", ...): y holds their indices 0..K-1 into the sorted names,
    and classes[y] gives the names back. A column of numbers and text is refused (a
    typo must not turn numbers into classes), as is an empty cell anywhere: the
    ValueError names the file, line and column.

    Returns
    -------
    X (n_rows, n_columns - 1) of dtype, y (n_rows,): or (X, None) when target is None.
    With return_classes=True, (X, y, classes): classes is the sorted array of the class
    names (str) of a text column, None for a numeric target.
    """
    path = os.fsdecode(os.fspath(path))
    try:
        data, names = read_csv(path, header=header, delimiter=delimiter)
    except ValueError:
        if target is None:
            raise
        text = _csv_text_target(path, target, header, delimiter, dtype)
        if text is None:                # the target column is numbers: not the trouble
            raise
        return text if return_classes else text[:2]
    if target is None:
        X, y = data.astype(dtype, copy=False), None
        return (X, y, None) if return_classes else (X, y)
    col = _target_column(path, target, names, data.shape[1])
    X = np.delete(data, col, axis=1).astype(dtype, copy=False)
    y = data[:, col]
    if isinstance(target_dtype, str) and target_dtype == "auto":
        # int64 labels only when every target is whole and fits int64 (1e19 would
        # become INT64_MIN); otherwise the floats as read
        y = y.astype(np.int64) if np.all(y == np.round(y)) and _fits(y, np.int64) else y
    else:
        target_dtype = np.dtype(target_dtype)
        if target_dtype.kind in "iu" and not _fits(y, target_dtype):
            bad = y[~_fits(y, target_dtype, each=True)][0]
            raise ValueError(f"{path}: target_dtype={target_dtype.name} cannot hold the "
                             f"target {bad:.17g} (column {col + 1}); use a float dtype or "
                             f"target_dtype='auto'")
        y = y.astype(target_dtype)
    X = np.ascontiguousarray(X)
    return (X, y, None) if return_classes else (X, y)


def _target_column(path, target, names, n_cols):
    """The index of the target column (an index or a name), checked."""
    if isinstance(target, str):
        if names is None:
            raise ValueError(f"{path}: target {target!r} is a column name, but the file has "
                             f"no header")
        if target not in names:
            raise ValueError(f"{path}: no column named {target!r} (columns: "
                             f"{', '.join(names)})"[:300])
        col = names.index(target)
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if not -n_cols <= target < n_cols:
            raise ValueError(f"{path}: target column {target} does not exist (the file has "
                             f"{n_cols} columns)")
        col = int(target) % n_cols
    else:
        raise TypeError(f"target must be a column index, a column name or None, "
                        f"got {target!r}")
    if n_cols < 2:
        raise ValueError(f"{path}: one column, nothing left for the features once the "
                         f"target is taken")
    return col


def _csv_text_target(path, target, header, delimiter, dtype):
    """(X, y, classes) for a file whose target column holds text, or None when that
    column is all numbers. The first problem in the file (a row of another length, an
    empty cell, a feature that is not a finite number) raises a ValueError with its
    line and column, as read_csv does."""
    first = _readable(path, lambda: next(_csv_rows(path, delimiter), None))
    if first is None:
        return None
    has_header = (header is True or
                  (header == "auto" and not any(_is_number(c) for c in first[1])))
    names = first[1] if has_header else None
    col = _target_column(path, target, names, len(first[1]))
    width, features, labels = None, [], []

    def rows():
        it = _csv_rows(path, delimiter)
        if has_header:
            next(it)
        yield from it

    for line, cells in _readable(path, lambda: list(rows())):
        if width is None:
            width = (len(cells), line)
            if names is not None and len(names) != width[0]:
                raise ValueError(f"{path}, line {first[0]}: the header names {len(names)} "
                                 f"columns, the rows have {width[0]}")
        elif len(cells) != width[0]:
            raise ValueError(f"{path}, line {line}: {len(cells)} fields, but line "
                             f"{width[1]} has {width[0]}")
        row = []
        for j, cell in enumerate(cells):
            if not cell:
                what = "the class name is missing" if j == col else "a missing value"
                raise ValueError(f"{path}, line {line}, column {j + 1}: empty cell ({what})")
            if j == col:
                labels.append((line, cell))
                continue
            if not _is_number(cell):
                raise ValueError(f"{path}, line {line}, column {j + 1}: {cell[:40]!r} is not "
                                 f"a number")
            value = float(cell)
            if not math.isfinite(value):
                raise ValueError(f"{path}, line {line}, column {j + 1}: {cell!r} is not a "
                                 f"finite number")
            row.append(value)
        features.append(row)
    numbers_at = [(line, cell) for line, cell in labels if _is_number(cell)]
    if not labels or len(numbers_at) == len(labels):
        return None
    if numbers_at:         # a typo in a numeric column must not turn it into classes
        line, cell = next((line, cell) for line, cell in labels if not _is_number(cell))
        raise ValueError(f"{path}, line {line}, column {col + 1}: {cell[:40]!r} is not a "
                         f"number, and line {numbers_at[0][0]} holds the number "
                         f"{numbers_at[0][1][:40]!r} (a column of class names holds no "
                         f"numbers)")
    classes, y = np.unique(np.array([cell for _, cell in labels]), return_inverse=True)
    X = np.array(features, dtype=np.float64).reshape(len(labels), width[0] - 1)
    return np.ascontiguousarray(X.astype(dtype, copy=False)), y.astype(np.int64), classes


def _fits(values, dtype, each=False):
    """Whether float values lie in the range of the integer dtype (all, or each)."""
    info = np.iinfo(dtype)
    # float(info.max) rounds up to a power of two for 64 bits: compare below max + 1
    inside = (values >= info.min) & (values < float(info.max) + 1)
    return inside if each else bool(inside.all())


# ---- tools ------------------------------------------------------------------

def train_test_split(X: npt.ArrayLike, y: npt.ArrayLike, test_size: float = 0.25,
                     seed: Seed = 0, *, shuffle: bool = True, stratify: bool = False,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out part of (X, y) for testing.

    test_size: a fraction in (0, 1) (rounded to a count) or a count >= 1.
    shuffle: pick the test rows at random (with `seed`); else the last rows.
    stratify: keep each class's share in both parts (y holds class labels).
    Returns X_train, X_test, y_train, y_test (scikit-learn's order); rows keep
    their relative order within each part only without shuffling.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = X.shape[0] if X.ndim else 0
    if X.ndim == 0 or y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"X and y must have the same number of rows, got shapes {X.shape} "
                         f"and {y.shape}")
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction or a count, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = int(round(n * test_size))
    else:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a count, got {test_size}")
    if not 1 <= n_test < n:
        raise ValueError(f"test_size={test_size} leaves {n - n_test} training and {n_test} "
                         f"test samples of {n}")
    rng = np.random.default_rng(seed)
    if stratify:
        if y.ndim != 1 or y.dtype.kind not in "iub":
            raise ValueError("stratify=True needs y to be class labels (n,) of ints")
        test = _stratified(rng if shuffle else None, y, n_test)
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
        test = np.zeros(n, dtype=bool)
        test[order[n - n_test:]] = True
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    if shuffle:
        train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def _stratified(rng, y, n_test):
    """A mask of n_test rows: each class gets its share (largest remainders first)."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    share = counts * n_test / y.shape[0]
    take = np.floor(share).astype(int)
    for c in np.argsort(-(share - take), kind="stable")[:n_test - take.sum()]:
        take[c] += 1
    test = np.zeros(y.shape[0], dtype=bool)
    for c in range(classes.size):
        rows = np.flatnonzero(inverse == c)
        if rng is not None:
            rows = rng.permutation(rows)
        test[rows[rows.size - take[c]:]] = True
    return test


split = train_test_split


def one_hot(y: npt.ArrayLike, n_classes: int | None = None,
            dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """T (n, n_classes) with T[i, y_i] = 1, zeros elsewhere, for integer labels y (n,)
    in [0, n_classes); n_classes defaults to max(y) + 1."""
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iub"):
        raise ValueError(f"y must be integer class labels (n,), got shape {y.shape} "
                         f"dtype {y.dtype}")
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    n_classes = _count(n_classes, "n_classes", 0)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y holds labels outside [0, {n_classes})")
    T = np.zeros((y.shape[0], n_classes), dtype=dtype)
    T[np.arange(y.shape[0]), y.astype(np.intp)] = 1
    return T


class Standardizer:
    """x' = (x - mean) / scale per feature, scale = std (population, ddof 0), or 1 for
    a feature with zero variance (it becomes 0, never NaN).

    fit(X) learns mean and std; transform, inverse_transform, fit_transform apply
    them. get_state() gives {'mean', 'std'} as plain arrays (np.savez them);
    Standardizer.from_state(state) rebuilds it.
    """

    mean: np.ndarray | None
    std: np.ndarray | None

    def __init__(self) -> None:
        self.mean = self.std = None

    def __repr__(self) -> str:
        return ("Standardizer()" if self.mean is None
                else f"Standardizer(n_features={self.mean.shape[0]})")

    @property
    def scale(self) -> np.ndarray:
        _, std = self._fitted()
        return np.where(std > 0, std, 1.0)

    def fit(self, X: npt.ArrayLike) -> Standardizer:
        X = self._array(X, "X")
        if X.shape[0] == 0:
            raise ValueError("X holds no samples")
        self.mean = X.mean(axis=0, dtype=np.float64)
        self.std = X.std(axis=0, dtype=np.float64)
        return self

    def transform(self, X: npt.ArrayLike) -> np.ndarray:
        X, mean = self._checked(X)
        return ((X - mean) / self.scale).astype(self._out_dtype(X), copy=False)

    def inverse_transform(self, X: npt.ArrayLike) -> np.ndarray:
        X, mean = self._checked(X)
        return (X * self.scale + mean).astype(self._out_dtype(X), copy=False)

    def fit_transform(self, X: npt.ArrayLike) -> np.ndarray:
        return self.fit(X).transform(X)

    def get_state(self) -> dict[str, np.ndarray]:
        mean, std = self._fitted()
        return {"mean": mean.copy(), "std": std.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, npt.ArrayLike]) -> Standardizer:
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.ndim != 1 or std.shape != mean.shape:
            raise ValueError(f"mean and std must be 1-D and the same shape, got "
                             f"{mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
            raise ValueError("mean and std must be finite, std >= 0")
        self = cls()
        self.mean, self.std = mean.copy(), std.copy()
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std); RuntimeError before fit."""
        if self.mean is None or self.std is None:
            raise RuntimeError("the Standardizer is not fitted: call fit(X) first")
        return self.mean, self.std

    @staticmethod
    def _array(X: npt.ArrayLike, name: str) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or inf")
        return X

    def _checked(self, X: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(X checked, mean)."""
        mean, _ = self._fitted()
        X = self._array(X, "X")
        if X.shape[1] != mean.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features, the Standardizer was fitted on "
                             f"{mean.shape[0]}")
        return X, mean

    @staticmethod
    def _out_dtype(X: np.ndarray) -> npt.DTypeLike:
        return X.dtype if X.dtype.kind == "f" else np.float64
