"""Activation kernels against their NumPy twins, finite differences and exact kinks."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nncore import functional as F, reference
from conftest import DTYPES, tol

ACTS = F.ACTIVATIONS
SMOOTH = ["identity", "sigmoid", "tanh", "softplus", "softmax"]


def sample(rng, shape, dtype, scale=3.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("shape", [(1,), (7,), (5, 17), (3, 4, 9), (0, 4), (1, 1)])
def test_same_as_reference(rng, dtype, name, shape):
    z = sample(rng, shape, dtype)
    a = F.activation_forward(name, z, np.full(shape, np.nan, dtype))
    a_ref = F.activation_forward(name, z, backend="numpy")
    np.testing.assert_allclose(a, a_ref, **tol(dtype))
    grad_a = sample(rng, shape, dtype, 1.0)
    g = F.activation_backward(name, z, a_ref, grad_a, np.full(shape, np.nan, dtype))
    g_ref = F.activation_backward(name, z, a_ref, grad_a, backend="numpy")
    np.testing.assert_allclose(g, g_ref, **tol(dtype))
    assert a.dtype == g.dtype == dtype


@given(name=st.sampled_from(ACTS), rows=st.integers(0, 40), cols=st.integers(1, 40),
       dtype=st.sampled_from(DTYPES), scale=st.sampled_from([0.1, 3.0, 50.0]),
       seed=st.integers(0, 2**16))
def test_hypothesis_same_as_reference(name, rows, cols, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    z = sample(rng, (rows, cols), dtype, scale)
    a = F.activation_forward(name, z)
    np.testing.assert_allclose(a, reference.activation_forward(name, z), **tol(dtype))
    grad_a = sample(rng, (rows, cols), dtype, 1.0)
    np.testing.assert_allclose(F.activation_backward(name, z, a, grad_a),
                               reference.activation_backward(name, z, a, grad_a), **tol(dtype))


@pytest.mark.parametrize("name", ACTS)
def test_backward_matches_finite_differences(rng, name):
    """d/dz sum(f(z) * r) by central differences, float64, step 1e-6: truncation
    error ~h^2 f''' ~ 1e-12 and rounding ~eps/h ~ 1e-10, so 1e-6 relative is loose."""
    z = rng.standard_normal((4, 6))
    z[np.abs(z) < 1e-3] = 0.5           # keep away from the kinks of relu/step/leaky
    r = rng.standard_normal((4, 6))
    a = F.activation_forward(name, z)
    g = F.activation_backward(name, z, a, r)
    h = 1e-6
    num = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        num[idx] = (np.sum(F.activation_forward(name, zp) * r)
                    - np.sum(F.activation_forward(name, zm) * r)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kinks_exact(dtype):
    z = np.array([-1.0, 0.0, 1.0], dtype)
    one = np.ones(3, dtype)
    assert F.activation_forward("relu", z).tolist() == [0, 0, 1]
    assert F.activation_backward("relu", z, F.activation_forward("relu", z), one).tolist() == [0, 0, 1]
    assert F.activation_forward("step", z).tolist() == [0, 0, 1]           # step(0) = 0
    assert F.activation_backward("step", z, z, one).tolist() == [0, 0, 0]  # step' = 0
    leaky = F.activation_forward("leaky_relu", z, slope=0.25)
    assert leaky.tolist() == [-0.25, 0, 1]
    assert F.activation_backward("leaky_relu", z, leaky, one, slope=0.25).tolist() == [0.25, 0.25, 1]
    # sigmoid(0) = 1/2, tanh(0) = 0, softplus(0) = log 2, softmax of equal logits = 1/n
    assert F.activation_forward("sigmoid", z)[1] == 0.5
    assert F.activation_forward("tanh", z)[1] == 0
    np.testing.assert_allclose(F.activation_forward("softplus", z)[1], np.log(2), **tol(dtype))
    assert F.activation_forward("softmax", np.zeros((1, 4), dtype)).tolist() == [[0.25] * 4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_extremes_finite_without_warnings(dtype, backend):
    z = np.array([[-1000.0, 1000.0, 0.0]], dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        s = F.activation_forward("sigmoid", z, backend=backend)
        assert s.tolist() == [[0.0, 1.0, 0.5]]
        sp = F.activation_forward("softplus", z, backend=backend)
        assert sp[0, 0] == 0 and sp[0, 1] == 1000
        big = np.array([[-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]], dtype)
        sm = F.activation_forward("softmax", big, backend=backend)
        assert np.all(np.isfinite(sm))
        np.testing.assert_allclose(sm, [[0, 1, 0], [0.5, 0.5, 0]], atol=1e-30)
        g = F.activation_backward("softmax", big, sm, np.ones_like(big), backend=backend)
        assert np.all(np.isfinite(g))
        assert np.all(np.isfinite(F.activation_backward("softplus", z, sp, np.ones_like(z),
                                                         backend=backend)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_threads_bitwise_equal(rng, dtype, name):
    z = sample(rng, (300, 700), dtype)          # 210k elements: above the parallel threshold
    grad_a = sample(rng, z.shape, dtype, 1.0)
    a1 = F.activation_forward(name, z, n_threads=1)
    a2 = F.activation_forward(name, z, n_threads=2)
    assert np.array_equal(a1, a2)
    assert np.array_equal(F.activation_backward(name, z, a1, grad_a, n_threads=1),
                          F.activation_backward(name, z, a1, grad_a, n_threads=2))


@pytest.mark.parametrize("name", ACTS)
def test_in_place_and_layouts(rng, name):
    z = sample(rng, (6, 5), np.float64)
    want = reference.activation_forward(name, z)
    zz = z.copy()
    assert F.activation_forward(name, zz, zz) is zz
    np.testing.assert_allclose(zz, want, **tol(np.float64))
    np.testing.assert_allclose(F.activation_forward(name, np.asfortranarray(z)), want,
                               **tol(np.float64))
    ro = z.copy(); ro.flags.writeable = False
    np.testing.assert_allclose(F.activation_forward(name, ro), want, **tol(np.float64))
    g = sample(rng, z.shape, np.float64, 1.0)
    g_want = reference.activation_backward(name, z, want, g)
    F.activation_backward(name, z, want, g, g)    # grad_z written over grad_a
    np.testing.assert_allclose(g, g_want, **tol(np.float64))


def test_usual_call_refuses_and_copies_as_the_checks_do(rng):
    """The usual call (2-D ndarrays of one dtype) is checked inline: an out it cannot
    take gets the full checks' error, and an out overlapping an input (shifted by one
    element, so a missed overlap reads values already overwritten) the copies' bits.
    (sigmoid' reads a and grad_a, softplus' z and grad_a.)"""
    z = sample(rng, (4, 40), np.float64)
    g = sample(rng, z.shape, np.float64, 1.0)
    frozen = np.empty_like(z)
    frozen.flags.writeable = False
    a = F.activation_forward("sigmoid", z)
    for out, error, match in ((frozen, ValueError, r"out is read-only"),
                              (np.empty((4, 80))[:, ::2], ValueError, r"out must be C-contiguous"),
                              (np.empty((4, 41)), ValueError, r"out must have shape \(4, 40\)"),
                              (np.empty(z.shape, np.float32), TypeError,
                               r"out must have dtype float64")):
        with pytest.raises(error, match=match):
            F.activation_forward("sigmoid", z, out)
        with pytest.raises(error, match=match):
            F.activation_backward("sigmoid", z, a, g, out)
    for act, name in (("sigmoid", "z"), ("softplus", "z"), ("sigmoid", "a"),
                      ("sigmoid", "grad_a"), ("softplus", "grad_a")):
        a = F.activation_forward(act, z)
        want_a = F.activation_forward(act, z.copy())
        want_g = F.activation_backward(act, z.copy(), a.copy(), g.copy())
        inputs = dict(z=z, a=a, grad_a=g)
        base = np.empty(z.size + 1)
        base[:-1] = inputs[name].ravel()
        inputs[name] = base[:-1].reshape(z.shape)            # the input ...
        out = base[1:].reshape(z.shape)                      # ... and out, one element on
        if name == "z":
            np.testing.assert_array_equal(F.activation_forward(act, inputs["z"], out), want_a)
            base[:-1] = z.ravel()
        got = F.activation_backward(act, inputs["z"], inputs["a"], inputs["grad_a"], out)
        np.testing.assert_array_equal(got, want_g)


def test_bad_input_messages():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"activation must be one of .*'relu'.*got 'rleu'"):
        F.activation_forward("rleu", z)
    with pytest.raises(TypeError, match=r"z must have dtype float32 or float64, got int64"):
        F.activation_forward("relu", np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"z must have at least 1 dimension"):
        F.activation_forward("relu", np.float64(1.0))
    with pytest.raises(ValueError, match=r"grad_a must have shape \(2, 3\), got \(3, 2\)"):
        F.activation_backward("relu", z, z, np.zeros((3, 2)))
    with pytest.raises(TypeError, match=r"a has dtype float32 but z has float64"):
        F.activation_backward("relu", z, z.astype(np.float32), z)
    with pytest.raises(TypeError, match=r"slope must be a real number"):
        F.activation_forward("leaky_relu", z, slope=None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_accuracy_over_its_range(dtype):
    """The vectorized sigmoid (vmath.h) within 2 ulp of the float64/longdouble truth
    across the whole range, exact at the special values, NaN kept."""
    z = np.linspace(-120, 120, 240_001).astype(dtype)
    a = F.activation_forward("sigmoid", z)
    zl = z.astype(np.longdouble)
    truth = 1 / (1 + np.exp(-zl))
    eps = np.finfo(dtype).eps
    normal = truth > np.finfo(dtype).tiny            # below it: 0 or a subnormal
    err = np.abs(a.astype(np.longdouble) - truth)
    assert np.all(err[normal] <= 2 * eps * truth[normal])
    assert np.all(err[~normal] <= np.finfo(dtype).tiny)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e4, -1e4], dtype)
    out = F.activation_forward("sigmoid", special)
    assert out[:4].tolist() == [0.5, 0.5, 1.0, 0.0]
    assert np.isnan(out[4]) and out[5] == 1.0 and out[6] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_a_run_does_not_depend_on_where_it_is_cut(rng, dtype):
    # vmath.h: each element gets the same vector arithmetic, a short tail included
    # (a masked load and store), so a value is the same in any run, and a run writes
    # nothing outside itself.
    z = sample(rng, (40,), dtype)
    whole = F.activation_forward("sigmoid", z)
    for lo in range(9):
        for hi in range(lo + 1, lo + 19):
            out = np.full(40, np.nan, dtype)
            F.activation_forward("sigmoid", z[lo:hi], out[lo:hi])
            assert np.array_equal(out[lo:hi], whole[lo:hi])
            assert np.isnan(out[:lo]).all() and np.isnan(out[hi:]).all()
