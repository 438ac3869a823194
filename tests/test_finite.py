"""all_finite and max_abs against their twins: every position of a NaN/inf, both
dtypes, threads, extremes."""
import os
import subprocess
import sys

import numpy as np
import pytest

from nncore import functional as F
from conftest import DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_finds_each_non_finite_value(dtype, bad):
    for n in (1, 7, 64, 1000):
        x = np.random.default_rng(n).standard_normal(n).astype(dtype)
        assert F.all_finite(x) and F.all_finite(x, backend="numpy")
        for i in {0, n // 2, n - 1}:
            y = x.copy()
            y[i] = bad
            assert not F.all_finite(y)
            assert F.all_finite(y) == F.all_finite(y, backend="numpy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_extremes_that_are_finite(dtype):
    info = np.finfo(dtype)
    x = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, 0.0, -0.0], dtype)
    assert F.all_finite(x)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_large_arrays_split_over_threads(n_threads):
    x = np.zeros((1100, 1000), np.float32)          # 1.1M elements: above the threshold
    assert F.all_finite(x, n_threads=n_threads)
    for i in (0, 549_999, 550_000, 1_099_999):      # around every possible cut
        x.flat[i] = np.nan
        assert not F.all_finite(x, n_threads=n_threads)
        x.flat[i] = 0


def test_layouts_and_bad_input():
    x = np.ones((6, 5))
    x[5, 4] = np.inf
    assert not F.all_finite(np.asfortranarray(x)) and not F.all_finite(x[:, ::2][:, 2:])
    assert F.all_finite(x[:5])
    ro = x.copy(); ro.flags.writeable = False
    assert not F.all_finite(ro)
    assert F.all_finite(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        F.all_finite(np.ones(3, np.int64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_abs_against_its_twin(dtype):
    info = np.finfo(dtype)
    rng = np.random.default_rng(2)
    for n in (1, 7, 64, 1001):
        x = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dtype)
        m = F.max_abs(x)
        assert m == F.max_abs(x, backend="numpy") == np.abs(x).max()   # exact: no rounding
        for bad in (np.nan, np.inf, -np.inf):
            for i in {0, n // 2, n - 1}:
                y = x.copy()
                y[i] = bad
                assert F.max_abs(y) == F.max_abs(y, backend="numpy") == np.inf
    extremes = np.array([-info.max, info.tiny, info.smallest_subnormal, -0.0], dtype)
    assert F.max_abs(extremes) == float(info.max)
    assert F.max_abs(extremes[1:]) == float(info.tiny)
    assert F.max_abs(np.array([-0.0, 0.0], dtype)) == 0.0
    assert F.max_abs(np.zeros((0, 3), dtype)) == F.max_abs(np.zeros(0), backend="numpy") == 0.0
    assert F.max_abs(np.asfortranarray(rng.standard_normal((4, 3)).astype(dtype) * 0
                                       + np.arange(12, dtype=dtype).reshape(4, 3))) == 11.0


# The AVX2 loops take 4 vectors a round (32 floats, 16 doubles) and leave the rest to
# a scalar tail: a value at any position of a round, of the tail, or of a lane must count.
BLOCK_EDGES = (1, 15, 16, 17, 31, 32, 33, 47, 64, 75)


def check_every_position(dtype):
    """all_finite and max_abs against NumPy with one NaN/inf, or the one largest value,
    at each position of arrays around the vector-round sizes."""
    rng = np.random.default_rng(5)
    for n in BLOCK_EDGES:
        x = rng.uniform(-1, 1, n).astype(dtype)
        assert F.all_finite(x) and F.max_abs(x) == np.abs(x).max()
        for i in range(n):
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[i] = bad
                assert not F.all_finite(y), (n, i, bad)
                assert F.max_abs(y) == np.inf, (n, i, bad)
            y = x.copy()
            y[i] = -3.0
            assert F.max_abs(y) == 3.0, (n, i)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_position_of_the_vector_rounds(dtype):
    check_every_position(dtype)


def test_portable_loops_every_position():
    """The same with NNCORE_SIMD=generic: the portable loops, not the AVX2 ones."""
    code = ("import numpy as np, sys\n"
            "sys.path.insert(0, %r)\n"
            "from test_finite import check_every_position\n"
            "for dt in (np.float32, np.float64):\n"
            "    check_every_position(dt)\n"
            "print('ok')\n" % os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NNCORE_SIMD="generic")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
