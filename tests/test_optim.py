"""The SGD and Adam update kernels against their NumPy twins and worked examples.

Tolerance (compiled vs numpy): both backends do the same IEEE operations in
the same order on each element with the same scalar factors, so a build
without FMA contraction agrees bitwise (this one does). The bound allows a
compiler that contracts a*b + c into one fma (-march=native): then each
step may differ by the elementwise rtol of conftest.py times the magnitude of
the terms summed, and a difference carries into later steps through param
and the optimizer state, at most linearly in the number of steps (the
factors momentum, beta1, beta2 < 1 and 1 - lr * weight_decay ~ 1 do not
amplify it). So atol = rtol * n_steps * scale, where scale is the largest
|value| or |change| an array takes along the trajectory.
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from nncore import functional as F
from conftest import run_with_simd
from nncore._kernels import optim as _optim
from conftest import DTYPES, tol

PARALLEL = max(_optim.PARALLEL_MIN_SIZE.values())
# 1 element, 0-d, primes, 2-D and 3-D, empty, and one above both thread
# thresholds that is no multiple of the 16-element strip blocks.
SHAPES = [(1,), (), (7,), (97,), (13, 31), (3, 5, 7), (0,), (0, 4),
          (PARALLEL // 128 + 1, 131)]
N_STEPS = 20

SGD_CONFIGS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True)]
WEIGHT_DECAYS = [0.0, 0.01]


# ---- helpers ------------------------------------------------------------------

def trajectory_tolerance(history, dtype):
    """assert_allclose keywords for the last entry of history (one array per
    step, starting state included) after len(history) - 1 steps."""
    n_steps = len(history) - 1
    scale = max(float(np.max(np.abs(h), initial=0.0)) for h in history)
    for before, after in zip(history, history[1:]):
        diff = np.abs(after.astype(np.float64) - before)
        scale = max(scale, float(np.max(diff, initial=0.0)))
    rtol = tol(dtype)["rtol"]
    return dict(rtol=rtol, atol=rtol * n_steps * scale + np.finfo(dtype).tiny)


def run(optimizer, param, state, grads, backend, n_threads=None, **hyper):
    """Apply len(grads) steps to copies of param and state; return the final
    arrays and the history of each (its value before the first and after each step)."""
    param, state = param.copy(), [s.copy() for s in state]
    history = [[param.copy()]] + [[s.copy()] for s in state]
    for t, grad in enumerate(grads, start=1):
        if optimizer == "adam":
            F.adam_step(param, grad, *state, step=t, backend=backend,
                        n_threads=n_threads, **hyper)
        else:
            F.sgd_step(param, grad, *state, backend=backend, n_threads=n_threads, **hyper)
        for h, a in zip(history, [param] + state):
            h.append(a.copy())
    return [param] + state, history


def start(rng, shape, dtype, optimizer, n_grads):
    param = rng.standard_normal(shape).astype(dtype)
    n_state = 2 if optimizer == "adam" else 1
    state = [np.zeros(shape, dtype) for _ in range(n_state)]
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(n_grads)]
    return param, state, grads


def assert_backends_agree(optimizer, param, state, grads, dtype, **hyper):
    # n_threads=2: the shape above the thresholds takes the parallel path
    ours, _ = run(optimizer, param, state, grads, "compiled", n_threads=2, **hyper)
    twin, history = run(optimizer, param, state, grads, "numpy", **hyper)
    for name, a, b, h in zip(["param", "state 1", "state 2"], ours, twin, history):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, err_msg=name, **trajectory_tolerance(h, dtype))


# ---- compiled kernels against the NumPy twins ----------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=["plain", "momentum", "nesterov"])
@pytest.mark.parametrize("weight_decay", WEIGHT_DECAYS)
def test_sgd_same_as_reference(rng, dtype, shape, config, weight_decay):
    param, state, grads = start(rng, shape, dtype, "sgd", N_STEPS)
    assert_backends_agree("sgd", param, state, grads, dtype, lr=0.05,
                          weight_decay=weight_decay, **config)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("weight_decay", WEIGHT_DECAYS)
def test_adam_same_as_reference(rng, dtype, shape, weight_decay):
    param, state, grads = start(rng, shape, dtype, "adam", N_STEPS)
    assert_backends_agree("adam", param, state, grads, dtype, lr=0.01,
                          weight_decay=weight_decay)


@given(dtype=st.sampled_from(DTYPES),
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=9),
       optimizer=st.sampled_from(["plain", "momentum", "nesterov", "adam"]),
       lr=st.floats(1e-4, 1.0), momentum=st.floats(0.01, 0.99),
       betas=st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.9999)),
       eps=st.sampled_from([1e-8, 1e-6, 1e-3]),
       weight_decay=st.sampled_from([0.0, 1e-4, 0.1]),
       n_steps=st.integers(1, 6), data=st.data())
def test_hypothesis_values_and_shapes(dtype, shape, optimizer, lr, momentum, betas, eps,
                                      weight_decay, n_steps, data):
    values = hnp.arrays(dtype, shape, elements=st.floats(-1e3, 1e3, width=32))
    param = data.draw(values, label="param")
    grads = [data.draw(values, label=f"grad {t}") for t in range(n_steps)]
    if optimizer == "adam":
        state = [np.zeros(shape, dtype), np.zeros(shape, dtype)]
        hyper = dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)
    else:
        state = [np.zeros(shape, dtype)]
        hyper = dict(lr=lr, weight_decay=weight_decay,
                     momentum=0.0 if optimizer == "plain" else momentum,
                     nesterov=optimizer == "nesterov")
    assert_backends_agree("adam" if optimizer == "adam" else "sgd", param, state,
                          grads, dtype, **hyper)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["plain", "momentum", "nesterov", "adam"])
def test_threads_bitwise_equal(rng, dtype, optimizer):
    # 90 300 elements: above both thresholds, so 2 and 3 threads really split it
    # (3 gives strips of unequal length).
    kind = "adam" if optimizer == "adam" else "sgd"
    param, state, grads = start(rng, (300, 301), dtype, kind, 5)
    hyper = (dict(lr=0.01, weight_decay=0.01) if kind == "adam" else
             dict(lr=0.05, weight_decay=0.01, momentum=0.0 if optimizer == "plain" else 0.9,
                  nesterov=optimizer == "nesterov"))
    results = [run(kind, param, state, grads, "compiled", n_threads=t, **hyper)[0]
               for t in (1, 2, 3)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# ---- worked examples and conventions -------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_sgd_hand_worked(dtype, backend):
    # Scalar p = 2, constant gradient g = 1, lr = 1/4, momentum 1/2: every
    # number below is a short binary fraction, so the results are exact.
    def two_steps(**kw):
        p, vel = np.array([2.0], dtype), np.zeros(1, dtype)
        out = []
        for _ in range(2):
            F.sgd_step(p, np.ones(1, dtype), vel, lr=0.25, backend=backend, **kw)
            out += [p[0], vel[0]]
        return out
    # plain: p = 2 - 0.25 * 1 = 1.75; p = 1.75 - 0.25 = 1.5 (velocity untouched)
    assert two_steps() == [1.75, 0.0, 1.5, 0.0]
    # momentum: v = 0.5 * 0 + 1 = 1 (the first step sets v = g), p = 2 - 0.25 * 1 = 1.75;
    #           v = 0.5 * 1 + 1 = 1.5, p = 1.75 - 0.25 * 1.5 = 1.375
    assert two_steps(momentum=0.5) == [1.75, 1.0, 1.375, 1.5]
    # nesterov: v = 1, p = 2 - 0.25 * (1 + 0.5 * 1) = 1.625;
    #           v = 1.5, p = 1.625 - 0.25 * (1 + 0.5 * 1.5) = 1.1875
    assert two_steps(momentum=0.5, nesterov=True) == [1.625, 1.0, 1.1875, 1.5]
    # weight decay 1/2: g = 1 + 0.5 * 2 = 2, p = 2 - 0.25 * 2 = 1.5;
    #                   g = 1 + 0.5 * 1.5 = 1.75, p = 1.5 - 0.25 * 1.75 = 1.0625
    assert two_steps(weight_decay=0.5) == [1.5, 0.0, 1.0625, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_adam_hand_worked(dtype, backend):
    # Step 1: m = (1 - b1) g and v = (1 - b2) g^2, so m / (1 - b1) = g and
    # sqrt(v) / sqrt(1 - b2) = |g|: p -= lr * g / (|g| + eps), about lr * sign(g).
    # Step 2 with the same g: m = (1 - b1)(1 + b1) g = (1 - b1^2) g, the bias
    # correction 1 - b1^2 gives g again, likewise |g| for v: another lr * sign(g).
    # A zero gradient leaves m = v = 0 and moves nothing: 0 / (0 + eps) = 0.
    lr, eps = 1e-3, 1e-8
    g = np.array([2.0, -0.5, 0.0, 1e-3], dtype)
    p = np.ones(4, dtype)
    m, v = np.zeros(4, dtype), np.zeros(4, dtype)
    want = np.ones(4)
    for t in (1, 2):
        F.adam_step(p, g, m, v, step=t, lr=lr, eps=eps, backend=backend)
        want -= lr * g.astype(np.float64) / (np.abs(g) + eps)
        np.testing.assert_allclose(p, want, **tol(dtype))
    # 1 - 2 * 0.001 * |g| / (|g| + 1e-8): the eps shows at g = 1e-3 (1e-5 relative)
    np.testing.assert_allclose(want, [0.998, 1.002, 1.0, 0.998 + 2e-8], rtol=1e-10)
    assert p[2] == 1.0 and m[2] == 0.0 and v[2] == 0.0
    # m after two steps: 0.9 * 0.1 g + 0.1 g = 0.19 g; v: 0.999 * 0.001 g^2 + 0.001 g^2
    np.testing.assert_allclose(m, 0.19 * g.astype(np.float64), **tol(dtype))
    np.testing.assert_allclose(v, 0.001999 * g.astype(np.float64) ** 2, **tol(dtype))


def test_adam_reference_is_textbook_adam(rng):
    # Kingma & Ba's form with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t),
    # p -= lr * m_hat / (sqrt(v_hat) + eps), in float64 plain Python: the same
    # maths as PyTorch's ordering, so equal to a few ulp per step.
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.99, 1e-6, 0.05
    p0 = rng.standard_normal(50)
    p, m, v = p0.copy(), np.zeros(50), np.zeros(50)
    pt, mt, vt = p0.copy(), np.zeros(50), np.zeros(50)
    for t in range(1, 11):
        grad = rng.standard_normal(50)
        F.adam_step(p, grad, m, v, step=t, lr=lr, beta1=b1, beta2=b2, eps=eps,
                    weight_decay=wd, backend="numpy")
        g = grad + wd * pt
        mt = b1 * mt + (1 - b1) * g
        vt = b2 * vt + (1 - b2) * g * g
        m_hat, v_hat = mt / (1 - b1 ** t), vt / (1 - b2 ** t)
        pt = pt - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(p, pt, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, mt, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_velocity_ignored_without_momentum(backend):
    p, vel = np.ones(5), np.full(5, 7.0)
    F.sgd_step(p, np.ones(5), vel, lr=0.5, backend=backend)
    assert np.array_equal(p, np.full(5, 0.5)) and np.array_equal(vel, np.full(5, 7.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_grad_layouts_and_aliasing(rng, dtype, backend):
    """grad may be strided, Fortran-ordered, read-only, a list, or share memory
    with what the step writes: the step always uses grad's values as passed."""
    p0 = rng.standard_normal((6, 5)).astype(dtype)
    g0 = rng.standard_normal((6, 5)).astype(dtype)

    def sgd(grad, p=None, vel=None):
        p = p0.copy() if p is None else p
        vel = np.zeros_like(p) if vel is None else vel
        assert F.sgd_step(p, grad, vel, lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=0.01, backend=backend) is None
        return p, vel

    want_p, want_vel = sgd(g0.copy())
    wide = np.zeros((6, 10), dtype)
    wide[:, ::2] = g0
    read_only = g0.copy()
    read_only.flags.writeable = False
    for grad in (wide[:, ::2], np.asfortranarray(g0), read_only):
        p, vel = sgd(grad)
        assert np.array_equal(p, want_p) and np.array_equal(vel, want_vel)
    if dtype == np.float64:
        p, vel = sgd(g0.tolist())
        assert np.array_equal(p, want_p)
    # grad is param itself, and grad is the velocity buffer: copied first
    p = g0.copy()
    sgd(p, p=p)
    assert np.array_equal(p, sgd(g0.copy(), p=g0.copy())[0])
    vel = g0.copy()
    p, _ = sgd(vel, vel=vel)
    want = sgd(g0.copy(), vel=g0.copy())
    assert np.array_equal(p, want[0]) and np.array_equal(vel, want[1])
    # Adam with grad = m
    m, v, p = g0.copy(), np.zeros_like(g0), p0.copy()
    F.adam_step(p, m, m, v, step=3, lr=0.01, backend=backend)
    m2, v2, p2 = g0.copy(), np.zeros_like(g0), p0.copy()
    F.adam_step(p2, g0.copy(), m2, v2, step=3, lr=0.01, backend=backend)
    assert np.array_equal(p, p2) and np.array_equal(m, m2) and np.array_equal(v, v2)


def test_numpy_scalar_arguments():
    # NumPy scalars become Python numbers first: np.int64 steps and np.float32
    # rates give the same bits as the equal Python values (no float64 promotion).
    def adam(step, lr):
        p, g = np.linspace(-1, 1, 9, dtype=np.float32), np.full(9, 0.5, np.float32)
        m, v = np.zeros(9, np.float32), np.zeros(9, np.float32)
        F.adam_step(p, g, m, v, step=step, lr=lr, backend="numpy")
        return p
    assert adam(np.int64(3), np.float32(0.1)).dtype == np.float32
    assert np.array_equal(adam(np.int64(3), np.float32(0.1)), adam(3, float(np.float32(0.1))))


# ---- bad input -------------------------------------------------------------------

def _arrays(dtype=np.float64, shape=(3, 4)):
    return [np.ones(shape, dtype) for _ in range(4)]


def _bad_sgd_cases(p, g, vel):
    f32 = np.ones((3, 4), np.float32)
    read_only = np.ones((3, 4))
    read_only.flags.writeable = False
    return [
        (dict(lr=0.0), ValueError, r"lr must be > 0, got 0.0"),
        (dict(lr=-0.1), ValueError, r"lr must be > 0, got -0.1"),
        (dict(lr=float("nan")), ValueError, r"lr must be finite, got nan"),
        (dict(lr="0.1"), TypeError, r"lr must be a real number, got str"),
        (dict(lr=0.1, momentum=-0.5, velocity=vel), ValueError, r"momentum must be >= 0, got -0.5"),
        (dict(lr=0.1, weight_decay=-1.0), ValueError, r"weight_decay must be >= 0, got -1.0"),
        (dict(lr=0.1, nesterov=True), ValueError, r"nesterov=True needs momentum > 0"),
        (dict(lr=0.1, nesterov="yes", momentum=0.9, velocity=vel), TypeError,
         r"nesterov must be a bool, got str"),
        (dict(lr=0.1, momentum=0.9), ValueError,
         r"velocity is required when momentum > 0 \(got momentum=0.9\)"),
        (dict(lr=0.1, grad=g.T), ValueError, r"grad must have shape \(3, 4\), got \(4, 3\)"),
        (dict(lr=0.1, grad=f32), TypeError, r"grad has dtype float32 but param has float64"),
        (dict(lr=0.1, grad=np.ones((3, 4), np.int64)), TypeError,
         r"grad must have dtype float32 or float64, got int64"),
        (dict(lr=0.1, param=np.ones((3, 4), np.int32)), TypeError,
         r"param must have dtype float32 or float64, got int32"),
        (dict(lr=0.1, param=[1.0, 2.0]), TypeError,
         r"param must be a NumPy array \(it is updated in place\), got list"),
        (dict(lr=0.1, param=np.ones((4, 3)).T), ValueError,
         r"param must be C-contiguous \(it is updated in place, never copied\), "
         r"got strides \(8, 24\) for shape \(3, 4\)"),
        (dict(lr=0.1, param=read_only), ValueError, r"param is read-only"),
        (dict(lr=0.1, momentum=0.9, velocity=np.ones((3, 5))), ValueError,
         r"velocity must have shape \(3, 4\), got \(3, 5\)"),
        (dict(lr=0.1, momentum=0.9, velocity=f32), TypeError,
         r"velocity has dtype float32 but param has float64"),
        (dict(lr=0.1, momentum=0.9, velocity=np.ones((3, 8))[:, ::2]), ValueError,
         r"velocity must be C-contiguous"),
        (dict(lr=0.1, momentum=0.9, velocity=p), ValueError,
         r"param and velocity share memory"),
        (dict(lr=0.1, backend="cuda"), ValueError, r"backend must be one of 'compiled', 'numpy'"),
        (dict(lr=0.1, n_threads=0), ValueError, r"n_threads must be >= 1, got 0"),
    ]


def _bad_adam_cases(p, g, m, v):
    return [
        (dict(step=0), ValueError, r"step must be >= 1 \(the count after this update\), got 0"),
        (dict(step=1.0), TypeError, r"step must be an int >= 1 .*got float 1.0"),
        (dict(step=True), TypeError, r"step must be an int >= 1 .*got bool True"),
        (dict(lr=0.0), ValueError, r"lr must be > 0, got 0.0"),
        (dict(beta1=1.0), ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
        (dict(beta1=-0.1), ValueError, r"beta1 must be in \[0, 1\), got -0.1"),
        (dict(beta2=1.5), ValueError, r"beta2 must be in \[0, 1\), got 1.5"),
        (dict(eps=0.0), ValueError, r"eps must be > 0, got 0.0"),
        (dict(eps=-1e-8), ValueError, r"eps must be > 0, got -1e-08"),
        (dict(weight_decay=-0.1), ValueError, r"weight_decay must be >= 0, got -0.1"),
        (dict(grad=np.ones(12)), ValueError, r"grad must have shape \(3, 4\), got \(12,\)"),
        (dict(m=np.ones((3, 4), np.float32)), TypeError, r"m has dtype float32 but param has float64"),
        (dict(v=np.ones((4, 3))), ValueError, r"v must have shape \(3, 4\), got \(4, 3\)"),
        (dict(m=np.ones((4, 3)).T), ValueError, r"m must be C-contiguous"),
        (dict(v=v[::-1]), ValueError, r"v must be C-contiguous"),
        (dict(m=None), TypeError, r"m must be a NumPy array \(it is updated in place\), got NoneType"),
        (dict(v=m), ValueError, r"m and v share memory"),
        (dict(m=p.reshape(-1)), ValueError, r"m must have shape"),
        (dict(m=p), ValueError, r"param and m share memory"),
        (dict(param=np.ones((3, 4), np.float16)), TypeError,
         r"param must have dtype float32 or float64, got float16"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_sgd_cases(*_arrays()[:3]))))
def test_sgd_bad_input(case):
    p, g, vel, _ = _arrays()
    kwargs, error, match = _bad_sgd_cases(p, g, vel)[case]
    args = dict(param=p, grad=g, velocity=None)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(error, match=match):
        F.sgd_step(args["param"], args["grad"], args["velocity"], **kwargs)
    assert np.all(p == 1) and np.all(vel == 1)     # checked before anything ran


@pytest.mark.parametrize("case", range(len(_bad_adam_cases(*_arrays()))))
def test_adam_bad_input(case):
    p, g, m, v = _arrays()
    kwargs, error, match = _bad_adam_cases(p, g, m, v)[case]
    args = dict(param=p, grad=g, m=m, v=v)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    kwargs = dict(dict(step=1, lr=1e-3), **kwargs)
    with pytest.raises(error, match=match):
        F.adam_step(args["param"], args["grad"], args["m"], args["v"], **kwargs)
    assert np.all(p == 1) and np.all(m == 1) and np.all(v == 1)


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_param_view_updated_in_place(backend):
    # A C-contiguous view (rows of a larger buffer) is updated where it lies.
    buf = np.zeros((4, 6))
    param, m, v = buf[1:3], np.zeros((2, 6)), np.zeros((2, 6))
    F.adam_step(param, np.ones((2, 6)), m, v, step=1, lr=0.5, backend=backend)
    np.testing.assert_allclose(buf[1:3], -0.5 / (1 + 1e-8), rtol=1e-15)
    assert np.all(buf[[0, 3]] == 0)


OPTIM_BITS = """
import hashlib, numpy as np
from nncore import functional as F
h = hashlib.sha256()
rng = np.random.default_rng(3)
for dt in (np.float32, np.float64):
    for n in (1, 7, 8, 9, 31, 100, 1000, 12544):
        base = [rng.standard_normal(n).astype(dt) for _ in range(3)]
        sq = np.abs(rng.standard_normal(n)).astype(dt)
        for wd in (0.0, 1e-3):
            for mom, nest in ((0.0, False), (0.9, False), (0.9, True)):
                p, g, v = (a.copy() for a in base)
                for _ in range(3):
                    F.sgd_step(p, g, v if mom else None, lr=0.01, momentum=mom,
                               weight_decay=wd, nesterov=nest)
                h.update(p.tobytes() + v.tobytes())
            p, g, m = (a.copy() for a in base); v = sq.copy()
            for t in range(1, 4):
                F.adam_step(p, g, m, v, step=t, lr=1e-3, weight_decay=wd)
            h.update(p.tobytes() + m.tobytes() + v.tobytes())
            for mom in (0.0, 0.8):
                p, g, b = (a.copy() for a in base); v = sq.copy()
                for _ in range(3):
                    F.rmsprop_step(p, g, v, b if mom else None, lr=0.01, momentum=mom,
                                   weight_decay=wd)
                h.update(p.tobytes() + v.tobytes() + b.tobytes())
print(h.hexdigest())
"""


def test_avx2_update_loops_give_the_baseline_bits():
    """optim_loops.h compiles each update loop for the baseline and for AVX2 without
    fma: every element gets the same operations, so both give the same bits (every
    optimizer, weight decay on and off, lengths around the vector widths)."""
    assert run_with_simd(OPTIM_BITS, "generic") == run_with_simd(OPTIM_BITS)
