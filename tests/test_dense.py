"""The fused dense layer against its NumPy twin and central differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from nncore import functional as F
from conftest import DTYPES, tol

ACTS = F.ACTIVATIONS


def layer(rng, n, n_in, n_out, dtype):
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(max(n_in, 1))).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return x, w, b


def close(dtype, k):
    """Tolerance for results that went through a length-k sum then a few elementwise ops."""
    eps = np.finfo(dtype).eps
    return dict(rtol=8 * eps * max(k, 1), atol=8 * eps * max(k, 1))


def test_hand_worked():
    x = np.array([[1.0, 2.0]])
    w = np.array([[3.0, 4.0], [5.0, 6.0]])
    b = np.array([1.0, -20.0])
    z, a = F.dense_forward(x, w, b, "relu")
    # z = [1*3 + 2*4 + 1, 1*5 + 2*6 - 20] = [12, -3]; relu -> [12, 0]
    assert z.tolist() == [[12.0, -3.0]] and a.tolist() == [[12.0, 0.0]]
    gx, gw, gb = F.dense_backward(x, w, z, a, np.array([[1.0, 1.0]]), "relu")
    # grad_z = [1, 0] (relu'(-3) = 0); grad_w = grad_z.T @ x = [[1, 2], [0, 0]];
    # grad_b = [1, 0]; grad_x = grad_z @ w = [3, 4]
    assert gw.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    assert gb.tolist() == [1.0, 0.0]
    assert gx.tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 17), (32, 64, 10), (13, 300, 7), (0, 4, 3),
                                   (300, 300, 20)])   # tall: B packed whole (resident)
def test_same_as_reference(rng, dtype, activation, shape):
    n, n_in, n_out = shape
    x, w, b = layer(rng, n, n_in, n_out, dtype)
    z, a = F.dense_forward(x, w, b, activation,
                           z_out=np.full((n, n_out), np.nan, dtype),
                           a_out=np.full((n, n_out), np.nan, dtype))
    zr, ar = F.dense_forward(x, w, b, activation, backend="numpy")
    np.testing.assert_allclose(z, zr, **close(dtype, n_in))
    np.testing.assert_allclose(a, ar, **close(dtype, n_in))
    grad_a = rng.standard_normal((n, n_out)).astype(dtype)
    ours = F.dense_backward(x, w, zr, ar, grad_a, activation)
    twin = F.dense_backward(x, w, zr, ar, grad_a, activation, backend="numpy")
    for k, got, want in zip((n_out, n, n), ours, twin):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **close(dtype, k))


@given(n=st.integers(0, 40), n_in=st.integers(1, 70), n_out=st.integers(1, 40),
       activation=st.sampled_from(ACTS), dtype=st.sampled_from(DTYPES),
       with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_hypothesis_same_as_reference(n, n_in, n_out, activation, dtype, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = layer(rng, n, n_in, n_out, dtype)
    b = b if with_bias else None
    z, a = F.dense_forward(x, w, b, activation)
    zr, ar = F.dense_forward(x, w, b, activation, backend="numpy")
    np.testing.assert_allclose(a, ar, **close(dtype, n_in))
    grad_a = rng.standard_normal((n, n_out)).astype(dtype)
    gx, gw, gb = F.dense_backward(x, w, zr, ar, grad_a, activation, need_grad_x=False)
    assert gx is None
    _, gwr, gbr = F.dense_backward(x, w, zr, ar, grad_a, activation, backend="numpy")
    np.testing.assert_allclose(gw, gwr, **close(dtype, n))
    np.testing.assert_allclose(gb, gbr, **close(dtype, n))


@pytest.mark.parametrize("activation", ACTS)
def test_backward_matches_finite_differences(rng, activation):
    """L = sum(a * r); central differences in float64, h = 1e-6 (error ~1e-10)."""
    x, w, b = layer(rng, 5, 4, 3, np.float64)
    r = rng.standard_normal((5, 3))

    def loss(x_, w_, b_):
        return np.sum(F.dense_forward(x_, w_, b_, activation)[1] * r)

    z, a = F.dense_forward(x, w, b, activation)
    if activation in ("relu", "leaky_relu", "step"):
        assert np.min(np.abs(z)) > 1e-4          # no kink inside the difference step
    gx, gw, gb = F.dense_backward(x, w, z, a, r, activation)
    h = 1e-6
    for param, grad in ((x, gx), (w, gw), (b, gb)):
        num = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            orig = param[idx]
            param[idx] = orig + h
            up = loss(x, w, b)
            param[idx] = orig - h
            down = loss(x, w, b)
            param[idx] = orig
            num[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softmax"])
def test_threads_bitwise_equal(rng, dtype, activation):
    x, w, b = layer(rng, 256, 784, 300, dtype)
    outs = []
    for t in (1, 2, 3):
        z, a = F.dense_forward(x, w, b, activation, n_threads=t)
        grads = F.dense_backward(x, w, z, a, a, activation, n_threads=t)
        outs.append((z, a) + grads)
    for other in outs[1:]:
        for p, q in zip(outs[0], other):
            assert np.array_equal(p, q)


def test_identity_a_is_z_and_no_bias(rng):
    x, w, _ = layer(rng, 4, 3, 2, np.float64)
    z, a = F.dense_forward(x, w, None, "identity")
    assert a is z
    np.testing.assert_allclose(z, x @ w.T, **tol(np.float64))


def test_layouts(rng):
    x, w, b = layer(rng, 9, 8, 7, np.float32)
    zr, ar = F.dense_forward(x, w, b, "tanh", backend="numpy")
    ro = w.copy(); ro.flags.writeable = False
    for xv, wv in ((np.asfortranarray(x), ro), (x, np.asfortranarray(w))):
        z, a = F.dense_forward(xv, wv, b, "tanh")
        np.testing.assert_allclose(a, ar, **close(np.float32, 8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("overlapping", ["x", "weight", "bias"])
def test_outputs_overlapping_an_input(dtype, overlapping):
    """An input that may share memory with z_out or a_out is copied first (the kernel
    refuses it): z is still x W^T + b. The product is tiny (240 multiply-adds, row by
    row) and the bias is added after it, so a missed overlap would read values z has
    already overwritten."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(200).astype(dtype)
    x, w, b = base[:60].reshape(12, 5), base[100:120].reshape(4, 5), base[140:144]
    want = x.astype(np.float64) @ w.T + b
    start = {"x": 40, "weight": 100, "bias": 136}[overlapping]
    z = base[start:start + 48].reshape(12, 4)   # row 0 on x's row 8, on w; row 1 on b
    F.dense_forward(x, w, b, "identity", z_out=z)
    np.testing.assert_allclose(z, want, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case, act", [("grad_weight on x", "tanh"), ("grad_x on w", "tanh"),
                                       ("grad_z on z", "softplus"), ("grad_z on a", "tanh"),
                                       ("grad_z is grad_a", "tanh")])
def test_backward_outputs_overlapping_an_input(dtype, case, act):
    """dense_backward with an output over an input's memory (shifted by a row, so that
    what is written first is read later) gives what it gives on separate arrays: the
    inputs are copied first (grad_z may be grad_a itself). Every product is tiny (240
    multiply-adds, computed row by row), so a missed overlap would read values already
    overwritten."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal(400).astype(dtype)
    x, w = base[:60].reshape(12, 5), base[100:120].reshape(4, 5)
    z, a, ga = (base[s:s + 48].reshape(12, 4) for s in (150, 200, 250))
    want = F.dense_backward(x.copy(), w.copy(), z.copy(), a.copy(), ga.copy(), act)
    out = dict(grad_weight=np.empty((4, 5), dtype), grad_x=np.empty((12, 5), dtype),
               grad_bias=np.empty(4, dtype), grad_z=np.empty((12, 4), dtype))
    name, _, on = case.partition(" on ")
    if case == "grad_z is grad_a":
        name, view = "grad_z", ga
    else:
        at = {"x": 20, "w": 100, "z": 154, "a": 204}[on]
        view = base[at:at + out[name].size].reshape(out[name].shape)
    out[name] = view
    got = F.dense_backward(x, w, z, a, ga, act, **out)
    for g, ref in zip(got, want):
        np.testing.assert_array_equal(g, ref)


def test_dense_forward_outputs_and_strided_inputs_of_the_usual_call():
    """The usual call (ndarrays of one dtype) is checked inline: every output it cannot
    take gets the full checks' error, and a strided bias or x gives the contiguous
    copy's bits."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    wide = rng.standard_normal(4)
    b = wide[::2]                                            # strided (2,)
    want = F.dense_forward(x, w, b.copy(), "relu")
    got = F.dense_forward(x, w, b, "relu")
    for g, ref in zip(got, want):
        np.testing.assert_array_equal(g, ref)
    xs = np.repeat(x, 2, axis=1)[:, ::2]                     # strided x
    np.testing.assert_array_equal(F.dense_forward(xs, w, b, "relu")[1], want[1])
    frozen = np.empty((4, 2))
    frozen.flags.writeable = False
    cases = [(dict(z_out=frozen), ValueError, r"z_out is read-only"),
             (dict(z_out=np.empty((4, 4))[:, ::2]), ValueError, r"z_out must be C-contiguous"),
             (dict(z_out=np.empty((4, 3))), ValueError, r"z_out must have shape \(4, 2\)"),
             (dict(a_out=np.empty((4, 2), np.float32)), TypeError,
              r"a_out must have dtype float64"),
             (dict(a_out=frozen), ValueError, r"a_out is read-only"),
             (dict(slope=float("nan")), ValueError, r"slope"),
             (dict(n_threads=0), ValueError, r"n_threads must be >= 1")]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            F.dense_forward(x, w, b.copy(), "relu", **kwargs)


def test_bad_input_messages():
    x, w, b = np.zeros((4, 3)), np.zeros((2, 3)), np.zeros(2)
    with pytest.raises(ValueError, match=r"x has 5 features but weight has shape \(2, 3\)"):
        F.dense_forward(np.zeros((4, 5)), w, b, "relu")
    with pytest.raises(ValueError, match=r"bias must have shape \(2\), got \(3,\)"):
        F.dense_forward(x, w, np.zeros(3), "relu")
    with pytest.raises(TypeError, match=r"weight has dtype float32 but x has float64"):
        F.dense_forward(x, w.astype(np.float32), b, "relu")
    with pytest.raises(ValueError, match=r"activation must be one of"):
        F.dense_forward(x, w, b, "swish")
    with pytest.raises(ValueError, match=r"a_out is z_out: softplus' needs z kept"):
        z = np.empty((4, 2))
        F.dense_forward(x, w, b, "softplus", z_out=z, a_out=z)
    with pytest.raises(ValueError, match=r"a_out is z_out: leaky_relu' needs z kept"):
        F.dense_forward(x, w, b, "leaky_relu", z_out=z, a_out=z, slope=-0.5)
    with pytest.raises(ValueError, match=r"grad_a must have shape \(4, 2\), got \(4, 3\)"):
        F.dense_backward(x, w, np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((4, 3)), "relu")
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        F.dense_forward(np.zeros(3), w, b, "relu")


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("activation", ["identity", "step", "sigmoid", "tanh", "relu",
                                        "leaky_relu"])
def test_a_written_over_z(backend, activation):
    # where f' follows from a, one buffer may hold z and then a = f(z); the backward
    # pass reading it for both gives what separate z and a give
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    g = rng.standard_normal((7, 3))
    z, a = F.dense_forward(x, w, b, activation, backend=backend)
    one = np.empty((7, 3))
    z1, a1 = F.dense_forward(x, w, b, activation, z_out=one, a_out=one, backend=backend)
    assert z1 is one and a1 is one
    np.testing.assert_array_equal(one, a)
    for sep, shared in zip(F.dense_backward(x, w, z, a, g, activation, backend=backend),
                           F.dense_backward(x, w, one, one, g, activation, backend=backend)):
        np.testing.assert_array_equal(sep, shared)


def test_an_unbuilt_layer_says_so():
    """forward and buffers on a Dense that has no weights yet raise the same clear
    RuntimeError (buffers raised AttributeError on None)."""
    from nncore import Dense
    layer = Dense(3, 2)
    x = np.zeros((4, 3))
    with pytest.raises(RuntimeError, match="has no weights yet"):
        layer.forward(x)
    with pytest.raises(RuntimeError, match="has no weights yet"):
        layer.buffers(4)


# (n, n_in, n_out): the tiny product; one block; a tall C with all of B packed once
# (resident) and several k blocks; a wide C (B packed per k block); two threads split
# by rows, and by columns (each thread's strip then reads all of x, one checks it)
FINITE_SHAPES = [(3, 4, 5), (40, 30, 20), (500, 600, 24), (20, 300, 200), (64, 700, 128)]


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("layout", ["rows", "columns", "strided"])
@pytest.mark.parametrize("shape", FINITE_SHAPES)
def test_finite_x_finds_every_bad_element(rng, backend, layout, shape):
    """finite_x=True: a NaN or inf anywhere in x (any layout: read in place, packed,
    strided) gives ValueError, at 1 and 2 threads; a finite x gives the bits of
    finite_x=False."""
    n, n_in, n_out = shape
    base = rng.standard_normal((n, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)

    def view(x):
        if layout == "columns":
            return np.asfortranarray(x)
        if layout == "strided":
            wide = np.zeros((n, 2 * n_in), np.float32)
            wide[:, ::2] = x
            return wide[:, ::2]
        return x

    for threads in (1, 2):
        kw = dict(backend=backend, n_threads=threads)
        z0, a0 = F.dense_forward(view(base), w, b, "relu", **kw)
        z1, a1 = F.dense_forward(view(base), w, b, "relu", finite_x=True, **kw)
        assert np.array_equal(z0, z1) and np.array_equal(a0, a1)
        for i, j, bad in ((0, 0, np.nan), (n - 1, n_in - 1, np.inf), (n // 2, n_in // 3, -np.inf),
                          (n - 1, min(n_in - 1, 270), np.nan)):
            x = base.copy()
            x[i, j] = bad
            with pytest.raises(ValueError, match=r"^x contains NaN or inf$"):
                F.dense_forward(view(x), w, b, "relu", finite_x=True, **kw)
