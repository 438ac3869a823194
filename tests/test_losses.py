"""Loss kernels: central differences check the twin and the kernels, the twin
checks the kernels, hand-worked examples check both.

Tolerances (see conftest.py):
- Gradients: each element is a few float64 operations and at most one
  exp/log1p, rounded once to the dtype, on both sides; so the dtype's
  elementwise tolerance `tol(dtype)`. Its atol covers entries that cancel
  towards zero (softmax - 1, sigmoid - t), whose absolute error is a few
  float64 ulp of s_i <= 1.
- Values: see `value_bound`.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nncore import functional as F, reference
from conftest import DTYPES, EPS, tol

LOSSES = F.LOSSES
LABEL_LOSSES = ("softmax_cross_entropy", "hinge")
BACKENDS = ("compiled", "numpy")
# N = 1, K = 1 (a valid if trivial problem for every loss), K = 2, primes, and
# 257 x 263 = 67591 elements, above LOSS_PARALLEL_MIN = 65536.
SHAPES = [(1, 1), (1, 2), (1, 7), (2, 1), (3, 2), (13, 2), (17, 11), (31, 3),
          (97, 13), (257, 263)]


def make_target(rng, name, n, k, dtype):
    if name in LABEL_LOSSES:
        return rng.integers(0, k, n)
    if name == "mse":
        return rng.standard_normal((n, k)).astype(dtype)
    return rng.random((n, k)).astype(dtype)            # probabilities in [0, 1)


def row_scale(n, sample_weight):
    return np.full(n, 1.0 / n) if sample_weight is None else sample_weight / sample_weight.sum()


def value_bound(output, target, sample_weight):
    """Bound on |L_compiled - L_twin|.

    Both sides widen the inputs to float64 exactly (so the float64 eps applies
    to float32 inputs too), compute each row with a few float64 operations and
    exp/log/log1p (each within 2 ulp), and sum in different orders (serial vs
    NumPy's pairwise sum). Every intermediate of row i is at most
    M_i = sum_j (|o_ij| + |t_ij| + 1)^2 + K max_j |o_ij| in magnitude, so by
    Higham's gamma_n bound for each side's sums the difference is below
    4 (N + K + 8) eps64 sum_i s_i M_i.
    """
    o = np.abs(output.astype(np.float64))
    n, k = o.shape
    t = np.abs(target.astype(np.float64)) if target.ndim == 2 else 0.0
    m = np.sum((o + t + 1) ** 2, axis=1) + k * o.max(axis=1)
    return 4 * (n + k + 8) * EPS[np.float64] * np.sum(row_scale(n, sample_weight) * m)


def both(name, output, target, **kw):
    """(compiled, numpy twin) results."""
    return (F.loss_forward_backward(name, output, target, **kw),
            F.loss_forward_backward(name, output, target, backend="numpy", **kw))


def check_same_as_twin(name, output, target, sample_weight=None):
    (v, g), (v_ref, g_ref) = both(name, output, target, sample_weight=sample_weight)
    assert isinstance(v, float) and isinstance(v_ref, float)
    assert g.dtype == output.dtype and g.shape == output.shape
    assert abs(v - v_ref) <= value_bound(output, target, sample_weight)
    np.testing.assert_allclose(g, g_ref, **tol(output.dtype))


# ---- compiled vs twin --------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_same_as_twin(rng, name, dtype, weighted, shape):
    n, k = shape
    output = (3 * rng.standard_normal(shape)).astype(dtype)
    target = make_target(rng, name, n, k, dtype)
    sw = rng.random(n) + 0.05 if weighted else None
    check_same_as_twin(name, output, target, sw)


@given(name=st.sampled_from(LOSSES), n=st.integers(1, 40), k=st.integers(1, 17),
       dtype=st.sampled_from(DTYPES), scale=st.sampled_from([1e-3, 1.0, 30.0]),
       integer_logits=st.booleans(), weighted=st.booleans(),
       zero_weights=st.booleans(), seed=st.integers(0, 2**16))
def test_hypothesis_same_as_twin(name, n, k, dtype, scale, integer_logits, weighted,
                                 zero_weights, seed):
    rng = np.random.default_rng(seed)
    if integer_logits:      # ties and hinge margins of exactly 0
        output = rng.integers(-3, 4, (n, k)).astype(dtype)
    else:
        output = (scale * rng.standard_normal((n, k))).astype(dtype)
    target = make_target(rng, name, n, k, dtype)
    sw = None
    if weighted:
        sw = rng.random(n)
        if zero_weights:    # some samples switched off; at least one left
            sw[rng.random(n) < 0.5] = 0
            sw[rng.integers(n)] = 1.0
    check_same_as_twin(name, output, target, sw)


# ---- gradient vs central differences ----------------------------------------

def away_from_kinks(rng, n, k):
    """Scores and labels whose hinge margins are all at least 0.05 from 0."""
    while True:
        o = 2 * rng.standard_normal((n, k))
        y = rng.integers(0, k, n)
        margin = o - o[np.arange(n), y][:, None] + 1
        margin[np.arange(n), y] = 1
        if np.abs(margin).min() > 0.05:
            return o, y


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_central_differences(rng, name, weighted, backend):
    # float64, h = 1e-6: truncation error h^2 |L'''| ~ 1e-12, rounding error
    # eps |L| / h ~ 2e-10, both far below the 1e-6 asked of the gradient.
    n, k = 4, 5
    if name == "hinge":
        output, target = away_from_kinks(rng, n, k)
    else:
        output = 2 * rng.standard_normal((n, k))
        target = make_target(rng, name, n, k, np.float64)
    sw = rng.random(n) + 0.1 if weighted else None

    def loss(o):
        return F.loss_forward_backward(name, o, target, sample_weight=sw, backend=backend)[0]

    _, grad = F.loss_forward_backward(name, output, target, sample_weight=sw, backend=backend)
    h = 1e-6
    fd = np.empty_like(output)
    for idx in np.ndindex(output.shape):
        up, down = output.copy(), output.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (loss(up) - loss(down)) / (2 * h)
    assert np.abs(grad).max() > 0
    assert np.abs(fd - grad).max() / np.abs(grad).max() < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_gradient_central_differences(rng, backend):
    w = rng.standard_normal((3, 4))
    grad = np.zeros_like(w)
    F.l2_penalty(w, 0.3, grad, backend=backend)
    h = 1e-6
    fd = np.empty_like(w)
    for idx in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (F.l2_penalty(up, 0.3, backend=backend)
                   - F.l2_penalty(down, 0.3, backend=backend)) / (2 * h)
    assert np.abs(fd - grad).max() / np.abs(grad).max() < 1e-6


# ---- hand-worked examples ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_hand_worked(dtype, backend):
    o = np.array([[1.0, 2.0], [3.0, 4.0]], dtype)
    t = np.array([[0.0, 2.0], [3.0, 2.0]], dtype)
    # d = o - t = [[1, 0], [0, 2]]; row losses 1/2 (1 + 0) = 0.5, 1/2 (0 + 4) = 2
    # L = (0.5 + 2) / 2 = 1.25;  grad = d / 2 = [[0.5, 0], [0, 1]]
    value, grad = F.loss_forward_backward("mse", o, t, backend=backend)
    assert value == 1.25
    assert np.array_equal(grad, [[0.5, 0.0], [0.0, 1.0]])
    # sample_weight [1, 3]: s = [1/4, 3/4]; L = 0.5/4 + 2 * 3/4 = 1.625
    # grad = [[1/4, 0], [0, 2 * 3/4]] = [[0.25, 0], [0, 1.5]]
    value, grad = F.loss_forward_backward("mse", o, t, sample_weight=[1, 3], backend=backend)
    assert value == 1.625
    assert np.array_equal(grad, [[0.25, 0.0], [0.0, 1.5]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_hand_worked(dtype, backend):
    o = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], dtype)
    y = np.array([0, 1])
    # row 0: softmax = [1/2, 1/2]; l = log(e^0 + e^0) - 0 = log 2
    #        grad = ([1/2, 1/2] - [1, 0]) / 2 = [-1/4, 1/4]
    # row 1: softmax = [3/4, 1/4]; l = log(3 + 1) - 0 = log 4
    #        grad = ([3/4, 1/4] - [0, 1]) / 2 = [3/8, -3/8]
    # L = (log 2 + log 4) / 2 = 1.5 log 2
    value, grad = F.loss_forward_backward("softmax_cross_entropy", o, y, backend=backend)
    rtol = tol(dtype)["rtol"]   # log(3) is rounded to dtype on input
    np.testing.assert_allclose(value, 1.5 * np.log(2), rtol=rtol)
    np.testing.assert_allclose(grad, [[-0.25, 0.25], [0.375, -0.375]], **tol(dtype))
    # logits [0, 0], label 0, alone: L = log 2, grad [-1/2, 1/2]
    value, grad = F.loss_forward_backward("softmax_cross_entropy", o[:1], y[:1],
                                          backend=backend)
    assert value == np.log(2)
    assert np.array_equal(grad, [[-0.5, 0.5]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_cross_entropy_hand_worked(dtype, backend):
    o = np.array([[0.0, np.log(3.0)]], dtype)
    t = np.array([[1.0, 0.5]], dtype)
    # entry 0: o = 0, t = 1: max(0, 0) - 0 + log1p(e^0) = log 2;  sigmoid(0) - 1 = -1/2
    # entry 1: o = log 3, t = 1/2: log 3 - log(3)/2 + log1p(1/3) = log(3)/2 + log 4 - log 3
    #          = 2 log 2 - log(3)/2;  sigmoid(log 3) - 1/2 = 3/4 - 1/2 = 1/4
    # N = 1: L = 3 log 2 - log(3)/2
    value, grad = F.loss_forward_backward("binary_cross_entropy", o, t, backend=backend)
    np.testing.assert_allclose(value, 3 * np.log(2) - np.log(3) / 2, rtol=tol(dtype)["rtol"])
    np.testing.assert_allclose(grad, [[-0.5, 0.25]], **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_hinge_hand_worked(dtype, backend):
    # cs231n's three-example SVM loss (scores of classes cat, car, frog).
    o = np.array([[3.2, 5.1, -1.7],
                  [1.3, 4.9, 2.0],
                  [2.2, 2.5, -3.1]], dtype)
    y = np.array([0, 1, 2])
    # row 0, y = 0: max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9 + 0;  grad [-1, 1, 0]
    # row 1, y = 1: max(0, 1.3 - 4.9 + 1) + max(0, 2.0 - 4.9 + 1) = 0 + 0;    grad [0, 0, 0]
    # row 2, y = 2: max(0, 2.2 + 3.1 + 1) + max(0, 2.5 + 3.1 + 1) = 6.3 + 6.6; grad [1, 1, -2]
    # L = (2.9 + 0 + 12.9) / 3 = 15.8 / 3 = 5.2667
    value, grad = F.loss_forward_backward("hinge", o, y, backend=backend)
    np.testing.assert_allclose(value, 15.8 / 3, rtol=1e-6)  # inputs rounded to float32
    assert np.array_equal(grad * 3, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_l2_penalty_hand_worked(dtype, backend):
    w = np.array([[1.0, 2.0], [3.0, -4.0]], dtype)
    # sum W^2 = 1 + 4 + 9 + 16 = 30;  value = 0.5 * 0.5 * 30 = 7.5
    assert F.l2_penalty(w, 0.5, backend=backend) == 7.5
    # grad_weight = 1 + 0.5 W = [[1.5, 2], [2.5, -1]], added in place
    g = np.ones((2, 2), dtype)
    assert F.l2_penalty(w, 0.5, g, backend=backend) == 7.5
    assert np.array_equal(g, [[1.5, 2.0], [2.5, -1.0]])
    # lam = 0: value 0, gradient unchanged
    assert F.l2_penalty(w, 0, g, backend=backend) == 0.0
    assert np.array_equal(g, [[1.5, 2.0], [2.5, -1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (13, 17), (3, 4, 5), (300, 257)], ids=str)
def test_l2_penalty_same_as_twin(rng, dtype, shape):
    w = rng.standard_normal(shape).astype(dtype)
    g0 = rng.standard_normal(shape).astype(dtype)
    g, g_ref = g0.copy(), g0.copy()
    v = F.l2_penalty(w, 1e-3, g)
    v_ref = F.l2_penalty(w, 1e-3, g_ref, backend="numpy")
    assert isinstance(v, float)
    # sum of size non-negative float64 terms, serial vs pairwise
    assert abs(v - v_ref) <= 2 * (w.size + 2) * EPS[np.float64] * v_ref
    np.testing.assert_allclose(g, g_ref, **tol(dtype))
    assert F.l2_penalty(w, 1e-3) == v        # without grad_weight: same value


# ---- extremes, kinks, NaN ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_extreme_logits(dtype, backend):
    o = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4]], dtype)
    y = np.array([1, 2, 0])
    # row 0: m = 1e4, sum exp(o - m) = 1 + 0 + 0: l = 1e4 - (-1e4) = 2e4; grad 3 [1, -1, 0]
    # row 1: m = 1e4, sum = 0 + 1 + 1 = 2: l = 1e4 + log 2 - 1e4 = log 2; grad 3 [0, 1/2, -1/2]
    # row 2: all equal: l = log 3; grad 3 [1/3 - 1, 1/3, 1/3]
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value, grad = F.loss_forward_backward("softmax_cross_entropy", o, y, backend=backend)
    np.testing.assert_allclose(value, (2e4 + np.log(2) + np.log(3)) / 3, rtol=1e-12)
    np.testing.assert_allclose(grad * 3, [[1, -1, 0], [0, 0.5, -0.5], [-2 / 3, 1 / 3, 1 / 3]],
                               **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_cross_entropy_extreme_logits(dtype, backend):
    o = np.array([[1000.0, -1000.0], [1000.0, -1000.0]], dtype)
    t = np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    # right and sure: 1000 - 1000 + log1p(e^-1000) = 0 and 0 - 0 + 0 = 0; grad 0
    # wrong and sure: 1000 - 0 + 0 = 1000 and 0 + 1000 + 0 = 1000; grad +-1
    # L = (0 + 0 + 1000 + 1000) / 2 = 1000
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value, grad = F.loss_forward_backward("binary_cross_entropy", o, t, backend=backend)
    assert value == 1000.0
    assert np.array_equal(grad, [[0.0, 0.0], [0.5, -0.5]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_hinge_kink_is_inactive(dtype, backend):
    # y = 0. Class 1: margin -1 - 0 + 1 = 0 exactly: inactive, adds 0 and gets
    # gradient 0. Class 2: margin 0.5 - 0 + 1 = 1.5: active. Class 3: margin
    # 2^-20 (exact in float32), just above the kink: active.
    o = np.array([[0.0, -1.0, 0.5, -1.0 + 2.0 ** -20]], dtype)
    y = np.array([0])
    value, grad = F.loss_forward_backward("hinge", o, y, backend=backend)
    assert value == 1.5 + 2.0 ** -20
    assert np.array_equal(grad, [[-2.0, 0.0, 1.0, 1.0]])
    # Every margin exactly 0: loss 0, gradient 0.
    value, grad = F.loss_forward_backward("hinge", np.array([[1.0, 0.0, 0.0]], dtype),
                                          y, backend=backend)
    assert value == 0.0
    assert np.array_equal(grad, np.zeros((1, 3)))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_passes_through(name, backend):
    o = np.array([[0.5, np.nan, -0.5], [0.1, 0.2, 0.3]])
    target = np.array([0, 1]) if name in LABEL_LOSSES else np.full((2, 3), 0.5)
    value, grad = F.loss_forward_backward(name, o, target, backend=backend)
    assert np.isnan(value)
    assert np.isnan(grad[0, 1]) and np.all(np.isfinite(grad[1]))


# ---- layouts, dtypes, threads ------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_read_only_and_out(rng, name, dtype):
    n, k = 9, 6
    output = rng.standard_normal((n, k)).astype(dtype)
    target = make_target(rng, name, n, k, dtype)
    sw = rng.random(n) + 0.1
    v, g = F.loss_forward_backward(name, output, target, sample_weight=sw)

    def same(*args, **kw):
        v2, g2 = F.loss_forward_backward(name, *args, sample_weight=kw.pop("sw", sw), **kw)
        assert v2 == v and np.array_equal(g2, g)
        return g2

    # read-only inputs
    ro = [x.copy() for x in (output, target, sw)]
    for x in ro:
        x.flags.writeable = False
    same(ro[0], ro[1], sw=ro[2])
    # non-contiguous inputs are copied, never computed wrong
    wide = np.zeros((n, 2 * k), dtype)
    wide[:, ::2] = output
    t_strided = (np.repeat(target, 2)[::2] if target.ndim == 1
                 else np.asfortranarray(target))
    same(wide[:, ::2], t_strided, sw=np.repeat(sw, 3)[::3])
    same(np.asfortranarray(output), target)
    # grad_out filled with NaN is written, not read, and returned
    out = np.full((n, k), np.nan, dtype)
    assert same(output, target, grad_out=out) is out
    # grad_out aliasing output: the gradient of the original output
    inplace = output.copy()
    same(inplace, target, grad_out=inplace)
    # lists, and any integer label dtype
    if name in LABEL_LOSSES:
        for int_dtype in (np.int8, np.uint8, np.int32, np.uint64, np.int64):
            same(output, target.astype(int_dtype))
        same(output, target.tolist(), sw=sw.tolist())


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy"])
def test_float_target_converted_to_output_dtype(rng, name):
    output = rng.standard_normal((5, 4)).astype(np.float32)
    target = rng.random((5, 4))                          # float64
    v, g = F.loss_forward_backward(name, output, target)
    v32, g32 = F.loss_forward_backward(name, output, target.astype(np.float32))
    assert g.dtype == np.float32 and v == v32 and np.array_equal(g, g32)
    v16, _ = F.loss_forward_backward(name, output, target.astype(np.float16))
    assert np.isfinite(v16)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (300, 257), (1000, 97)], ids=str)
def test_threads_bitwise_equal(rng, name, dtype, shape):
    # 300 x 257 and 1000 x 97 are above LOSS_PARALLEL_MIN: rows run in parallel.
    n, k = shape
    output = (3 * rng.standard_normal(shape)).astype(dtype)
    target = make_target(rng, name, n, k, dtype)
    sw = rng.random(n)
    results = [F.loss_forward_backward(name, output, target, sample_weight=sw, n_threads=t)
               for t in (1, 2, 3)]
    for v, g in results[1:]:
        assert v == results[0][0]
        assert np.array_equal(g, results[0][1])


def test_losses_listed():
    assert F.LOSSES == reference.LOSSES == (
        "mse", "softmax_cross_entropy", "binary_cross_entropy", "hinge")


# ---- bad input ---------------------------------------------------------------

O = np.zeros((3, 4))
T = np.full((3, 4), 0.5)
Y = np.array([0, 1, 3])

BAD_LOSS_INPUTS = [
    # (name, output, target, kwargs, exception, message)
    ("l1", O, T, {}, ValueError,
     r"name must be one of 'mse', 'softmax_cross_entropy', 'binary_cross_entropy', "
     r"'hinge'; got 'l1'"),
    ("mse", np.zeros(4), T, {}, ValueError, r"output must be 2-D, got a 1-D array of shape \(4,\)"),
    ("mse", np.zeros((3, 4), int), T, {}, TypeError,
     r"output must have dtype float32 or float64, got int64"),
    ("mse", np.zeros((0, 4)), np.zeros((0, 4)), {}, ValueError,
     r"output is an empty batch \(shape \(0, 4\)\)"),
    ("mse", np.zeros((3, 0)), np.zeros((3, 0)), {}, ValueError,
     r"output must have K >= 1 columns, got shape \(3, 0\)"),
    ("mse", O, np.zeros((3, 5)), {}, ValueError,
     r"target must have shape \(3, 4\), got \(3, 5\)"),
    ("mse", O, np.zeros((3, 4), int), {}, TypeError,
     r"target must have a floating dtype for mse, got int64"),
    ("binary_cross_entropy", O, np.zeros((3, 4), np.int32), {}, TypeError,
     r"target must have a floating dtype for binary_cross_entropy, got int32"),
    ("binary_cross_entropy", O, np.where(np.eye(3, 4) > 0, 1.5, 0.5), {}, ValueError,
     r"target must lie in \[0, 1\] for binary_cross_entropy, got 1.5 at index \(0, 0\)"),
    ("binary_cross_entropy", O, np.full((3, 4), -0.25), {}, ValueError,
     r"target must lie in \[0, 1\] for binary_cross_entropy, got -0.25"),
    ("softmax_cross_entropy", O, Y.astype(float), {}, TypeError,
     r"target must hold integer class labels for softmax_cross_entropy, got dtype float64"),
    ("hinge", O, Y.astype(np.float32), {}, TypeError,
     r"target must hold integer class labels for hinge, got dtype float32"),
    ("hinge", O, Y.astype(bool), {}, TypeError,
     r"target must hold integer class labels for hinge, got dtype bool"),
    ("softmax_cross_entropy", O, np.array([0, 1]), {}, ValueError,
     r"target must have shape \(3\), got \(2,\)"),
    ("softmax_cross_entropy", O, np.eye(3, 4, dtype=int), {}, ValueError,
     r"target must have shape \(3\), got \(3, 4\)"),
    ("softmax_cross_entropy", O, np.array([0, 4, 1]), {}, ValueError,
     r"target holds label 4, outside \[0, K\) for K = 4 classes"),
    ("hinge", O, np.array([0, -1, 1]), {}, ValueError,
     r"target holds label -1, outside \[0, K\) for K = 4 classes"),
    ("mse", O, T, dict(sample_weight=np.ones(2)), ValueError,
     r"sample_weight must have shape \(3\), got \(2,\)"),
    ("mse", O, T, dict(sample_weight=np.array([1.0, -1.0, 1.0])), ValueError,
     r"sample_weight must be >= 0, got -1.0 at index 1"),
    ("mse", O, T, dict(sample_weight=np.zeros(3)), ValueError,
     r"sample_weight must not be all zero"),
    ("mse", O, T, dict(sample_weight=np.array([1.0, np.inf, 1.0])), ValueError,
     r"sample_weight must be finite, got inf"),
    ("mse", O, T, dict(sample_weight=np.ones(3, bool)), TypeError,
     r"sample_weight must hold real numbers, got dtype bool"),
    ("mse", O, T, dict(grad_out=np.empty((4, 3))), ValueError,
     r"grad_out must have shape \(3, 4\), got \(4, 3\)"),
    ("mse", O, T, dict(grad_out=np.empty((3, 4), np.float32)), TypeError,
     r"grad_out must have dtype float64, got float32"),
    ("mse", O, T, dict(grad_out=np.empty((4, 3)).T), ValueError,
     r"grad_out must be C-contiguous"),
    ("mse", O, T, dict(backend="cuda"), ValueError, r"backend must be one of"),
    ("mse", O, T, dict(n_threads=0), ValueError, r"n_threads must be >= 1, got 0"),
]


@pytest.mark.parametrize("name, output, target, kwargs, exc, match", BAD_LOSS_INPUTS,
                         ids=[m[:40] for *_, m in BAD_LOSS_INPUTS])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_loss_input(name, output, target, kwargs, exc, match, backend):
    kwargs = dict(kwargs)
    kwargs.setdefault("backend", backend)
    with pytest.raises(exc, match=match):
        F.loss_forward_backward(name, output, target, **kwargs)


def test_read_only_grad_out_refused():
    out = np.empty((3, 4))
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"grad_out is read-only"):
        F.loss_forward_backward("mse", O, T, out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_l2_input(backend):
    w = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"lam must be >= 0, got -0.1"):
        F.l2_penalty(w, -0.1, backend=backend)
    with pytest.raises(TypeError, match=r"lam must be a real number, got str"):
        F.l2_penalty(w, "0.1", backend=backend)
    with pytest.raises(ValueError, match=r"lam must be finite, got nan"):
        F.l2_penalty(w, float("nan"), backend=backend)
    with pytest.raises(TypeError, match=r"weight must have dtype float32 or float64, got int64"):
        F.l2_penalty(np.ones((2, 3), int), 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"grad_weight must have shape \(2, 3\), got \(3, 2\)"):
        F.l2_penalty(w, 0.1, np.zeros((3, 2)), backend=backend)
    with pytest.raises(TypeError, match=r"grad_weight must have dtype float64, got float32"):
        F.l2_penalty(w, 0.1, np.zeros((2, 3), np.float32), backend=backend)
    with pytest.raises(ValueError, match=r"grad_weight must be C-contiguous"):
        F.l2_penalty(w, 0.1, np.zeros((3, 2)).T, backend=backend)
    with pytest.raises(TypeError, match=r"grad_weight must be a NumPy array or None, got list"):
        F.l2_penalty(w, 0.1, [[0.0] * 3] * 2, backend=backend)


def test_l2_read_only_and_strided_weight(rng):
    w = rng.standard_normal((6, 8))
    g = np.zeros_like(w)
    v = F.l2_penalty(w, 0.2, g)
    ro = w.copy()
    ro.flags.writeable = False
    g2 = np.zeros_like(w)
    assert F.l2_penalty(ro, 0.2, g2) == v and np.array_equal(g2, g)
    g3 = np.zeros((8, 6)).T.copy()
    assert F.l2_penalty(np.asfortranarray(w), 0.2, g3) == v and np.array_equal(g3, g)


def test_kernel_guards():
    """The def wrappers stay in bounds when called directly with bad arguments."""
    from nncore._kernels import losses as _losses
    o, g, s = np.zeros((2, 3)), np.empty((2, 3)), np.full(2, 0.5)
    with pytest.raises(ValueError, match=r"a label is outside \[0, K\)"):
        _losses.hinge(o, np.array([0, 3], np.intp), s, g, 1)
    with pytest.raises(ValueError, match=r"do not match output"):
        _losses.softmax_cross_entropy(o, np.array([0, 1, 2], np.intp), s, g, 1)
    with pytest.raises(ValueError, match=r"do not match output"):
        _losses.mse(o, np.zeros((2, 2)), s, g, 1)
    with pytest.raises(ValueError, match=r"output must be non-empty"):
        _losses.mse(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match=r"grad_weight does not match weight"):
        _losses.l2_penalty(np.zeros(3), 1.0, np.zeros(2))
