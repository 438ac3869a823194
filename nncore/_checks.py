"""Argument checks shared by nncore.functional: each error names the argument,
what was expected and what was given, and is raised before compiled code runs."""
from __future__ import annotations

import math
import numbers
import warnings

from typing import TYPE_CHECKING, Callable, Collection, Sequence

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BACKENDS = ("compiled", "numpy")


# NumPy >= 1.24 raises ValueError for a ragged list; older NumPy makes an object array
# and warns, which asarray turns into the error with warnings.catch_warnings -- a change
# of the process-wide filters, so not safe beside other threads: only there.
_RAGGED_WARNS = tuple(int(v) for v in np.__version__.split(".")[:2]) < (1, 24)


def asarray(x: npt.ArrayLike, name: str) -> np.ndarray:
    """np.asarray(x), with a ValueError naming the argument for a ragged list."""
    ragged = (f"{name} is ragged (rows of different lengths, or numbers mixed with "
              f"sequences): pass a rectangular array")
    try:
        if not _RAGGED_WARNS:
            return np.asarray(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.VisibleDeprecationWarning)
            return np.asarray(x)
    except (ValueError, Warning) as e:
        raise ValueError(f"{ragged} ({e})") from None


def float_array(x: npt.ArrayLike, name: str, ndim: int | None = None) -> np.ndarray:
    """x as a float32/float64 ndarray (array-likes converted, never cast)."""
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, numbers.Real)):
            x = asarray(x, name)
        else:
            raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a {x.ndim}-D array of shape {x.shape}")
    return x


def same_dtype(**arrays: np.ndarray) -> np.dtype:
    """All arrays share one dtype (nncore never mixes precisions); returns it."""
    items = iter(arrays.items())
    first_name, first = next(items)
    dtype = first.dtype
    for name, arr in items:
        if arr is not None and arr.dtype is not dtype and arr.dtype != dtype:
            raise TypeError(f"{name} has dtype {arr.dtype} but {first_name} has "
                            f"{dtype}: pass both in one precision")
    return dtype


def shape(x: np.ndarray, name: str, expected: Sequence[int | None]) -> np.ndarray:
    """x.shape == expected (None in expected matches any length)."""
    if x.shape == expected:
        return x
    ok = len(x.shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    return x


def out_array(out: object, name: str, expected_shape: tuple[int, ...],
              dtype: npt.DTypeLike) -> np.ndarray:
    """An output array: None (allocate) or a writeable C-contiguous ndarray."""
    if out is None:
        return np.empty(expected_shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    shape(out, name, expected_shape)
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def contiguous(x: np.ndarray) -> np.ndarray:
    """A C-contiguous view of x, or a copy when it has none."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def unaliased(x: np.ndarray, *outs: np.ndarray | None) -> np.ndarray:
    """x, copied if it may share memory with any of outs (kernels write outs while reading x)."""
    for out in outs:
        if out is not None and np.may_share_memory(x, out):
            return x.copy()
    return x


def strided_ok(x: np.ndarray) -> np.ndarray:
    """x, copied if a stride is not a whole number of elements (from as_strided)."""
    if x.flags.c_contiguous:
        return x
    itemsize = x.itemsize
    for s in x.strides:
        if s % itemsize:
            return np.ascontiguousarray(x)
    return x


def real_scalar(value: object, name: str, *, positive: bool = False,
                nonnegative: bool = False) -> float:
    """A Python float from a real number (bool refused)."""
    if type(value) is not float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def choice(value: object, name: str, options: Collection[str]) -> str:
    """value is one of options (a ValueError lists them)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def backend(value: object) -> str:
    return choice(value, "backend", BACKENDS)


def _as_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return asarray(x, name)
    raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")


def class_labels(y: object, name: str, n_samples: int, n_classes: int,
                 what: str) -> np.ndarray:
    """Integer class labels (n_samples,) in [0, n_classes), as C-contiguous intp.
    Any integer dtype is accepted; floats (even whole-valued) and bools are refused."""
    y = _as_array(y, name)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels for {what}, "
                        f"got dtype {y.dtype}")
    shape(y, name, (n_samples,))
    lo, hi = y.min(), y.max()
    bad = lo if lo < 0 else hi if hi >= n_classes else None
    if bad is not None:
        raise ValueError(f"{name} holds label {bad}, outside [0, K) for K = {n_classes} "
                         f"classes (output's second dimension)")
    return np.ascontiguousarray(y, dtype=np.intp)


def float_target(t: object, name: str, expected_shape: tuple[int, ...],
                 dtype: npt.DTypeLike, what: str) -> np.ndarray:
    """A floating target of expected_shape, converted to dtype, C-contiguous."""
    t = _as_array(t, name)
    if t.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype for {what}, got {t.dtype}")
    shape(t, name, expected_shape)
    return np.ascontiguousarray(t, dtype=dtype)


def sample_weights(w: object, name: str, n_samples: int, nonzero: bool = True) -> np.ndarray:
    """Sample weights (n_samples,) as float64: finite, >= 0, not all zero (unless
    nonzero is False: one process's part of the weights of a distributed fit)."""
    w = _as_array(w, name)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    shape(w, name, (n_samples,))
    w = np.ascontiguousarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be finite, got {w[~np.isfinite(w)][0]}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be >= 0, got {w[w < 0][0]} "
                         f"at index {int(np.argmax(w < 0))}")
    if nonzero and not np.any(w > 0):
        raise ValueError(f"{name} must not be all zero (the weights are divided by their sum)")
    return w


def model_inputs(x: npt.ArrayLike, name: str, n_inputs: int, dtype: np.dtype,
                 finite: Callable[[np.ndarray], bool] | None = None) -> np.ndarray:
    """A model's inputs: real numbers, 2-D (n_samples, n_inputs), as a C-contiguous
    array of dtype with no NaN or inf. Values that are finite but beyond dtype's range
    (a float64 1e300 for a float32 model) are refused as such, not as "NaN or inf".
    finite(a) -> bool checks the converted array (default all_finite below)."""
    if not isinstance(x, np.ndarray):
        x = asarray(x, name)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {x.shape}")
    if x.shape[1] != n_inputs:
        raise ValueError(f"{name} has {x.shape[1]} features but the first layer takes "
                         f"{n_inputs}")
    dtype = np.dtype(dtype)
    if x.dtype == dtype and x.flags.c_contiguous:
        converted = x
    else:
        with np.errstate(over="ignore"):                 # reported below
            converted = np.ascontiguousarray(x, dtype=dtype)
    if not (finite or all_finite)(converted):
        if converted is not x and x.dtype.kind == "f" and all_finite(x):
            big = float(np.max(np.abs(x)))
            raise ValueError(f"{name} holds values beyond the {dtype} range (largest magnitude "
                             f"{big:.3g}; {dtype} holds up to {float(np.finfo(dtype).max):.3g}): "
                             f"scale the inputs or use a float64 model")
        raise ValueError(f"{name} contains NaN or inf")
    return converted


def all_finite(x: npt.ArrayLike, rows: int = 4096) -> bool:
    """True when x holds no NaN or inf; checked in blocks of rows so the
    temporary mask stays small (a full mask of a large X would double its memory)."""
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] <= rows:
        return bool(np.isfinite(x).all())
    return all(np.isfinite(x[i:i + rows]).all() for i in range(0, x.shape[0], rows))
