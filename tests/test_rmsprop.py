"""The RMSprop update kernel (nncore._kernels.optim.rmsprop_step) against its NumPy twin,
a worked example and PyTorch's torch.optim.RMSprop when it is installed.

Tolerance: as for SGD and Adam (tests/test_optim.py), the two backends do the same
IEEE operations in the same order per element, so a build without FMA contraction
agrees bitwise; the bound allows a contracting compiler, per step rtol * scale,
growing at most linearly over the steps (trajectory_tolerance).
"""
import numpy as np
import pytest

from nncore import functional as F
from conftest import DTYPES, tol
from test_optim import SHAPES, trajectory_tolerance

N_STEPS = 20
CONFIGS = [dict(), dict(momentum=0.9), dict(alpha=0.9, eps=1e-3, weight_decay=0.01),
           dict(momentum=0.5, weight_decay=0.01)]


def run(param, grads, backend, n_threads=None, **hyper):
    param = param.copy()
    v, buf = np.zeros_like(param), np.zeros_like(param)
    history = [[param.copy()], [v.copy()], [buf.copy()]]
    for grad in grads:
        F.rmsprop_step(param, grad, v, buf, lr=0.01, backend=backend, n_threads=n_threads,
                       **hyper)
        for h, a in zip(history, (param, v, buf)):
            h.append(a.copy())
    return (param, v, buf), history


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=["plain", "momentum", "alpha-eps-wd", "both"])
def test_rmsprop_same_as_reference(rng, dtype, shape, config):
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(N_STEPS)]
    ours, _ = run(param, grads, "compiled", n_threads=2, **config)
    twin, history = run(param, grads, "numpy", **config)
    for name, a, b, h in zip(["param", "v", "buf"], ours, twin, history):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, err_msg=name, **trajectory_tolerance(h, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_threads_bitwise_equal(rng, dtype):
    param = rng.standard_normal((300, 301)).astype(dtype)       # above the threshold
    grads = [rng.standard_normal(param.shape).astype(dtype) for _ in range(3)]
    results = [run(param, grads, "compiled", n_threads=t, momentum=0.9)[0] for t in (1, 2, 3)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_rmsprop_hand_worked(dtype, backend):
    # alpha = 3/4, g = 2, lr = 1/4, eps = 0, momentum 1/2, p = 1:
    # v = 1/4 * 4 = 1, d = 2 / 1 = 2, buf = 2, p = 1 - 1/4 * 2 = 0.5;
    # v = 3/4 + 1 = 1.75, d = 2 / sqrt(1.75), buf = 1 + d, p = 0.5 - (1 + d) / 4.
    p = np.array([1.0], dtype)
    v, buf = np.zeros(1, dtype), np.zeros(1, dtype)
    g = np.array([2.0], dtype)
    F.rmsprop_step(p, g, v, buf, lr=0.25, alpha=0.75, eps=1e-30, momentum=0.5, backend=backend)
    assert (p[0], v[0], buf[0]) == (0.5, 1.0, 2.0)
    F.rmsprop_step(p, g, v, buf, lr=0.25, alpha=0.75, eps=1e-30, momentum=0.5, backend=backend)
    d = 2 / np.sqrt(1.75)
    np.testing.assert_allclose([p[0], v[0], buf[0]], [0.5 - (1 + d) / 4, 1.75, 1 + d],
                               **tol(dtype))


def test_rmsprop_matches_pytorch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: the float64 "
                                "comparison with torch.optim.RMSprop is skipped")
    for hyper in (dict(alpha=0.9, eps=1e-6), dict(alpha=0.99, eps=1e-8, momentum=0.8,
                                                  weight_decay=0.01)):
        p = rng.standard_normal(50)
        grads = [rng.standard_normal(50) for _ in range(10)]
        tp = torch.tensor(p.copy(), requires_grad=True)
        opt = torch.optim.RMSprop([tp], lr=0.01, **hyper)
        ours, v, buf = p.copy(), np.zeros(50), np.zeros(50)
        for g in grads:
            tp.grad = torch.tensor(g)
            opt.step()
            F.rmsprop_step(ours, g, v, buf, lr=0.01, **hyper)
        # float64, 10 steps: rounding-level agreement
        np.testing.assert_allclose(ours, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(alpha=1.0), ValueError, r"alpha must be in \[0, 1\)"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(momentum=-1.0), ValueError, "momentum must be >= 0"),
    (dict(momentum=0.9, buf=None), ValueError, "buf is required when momentum > 0"),
    (dict(lr=0.0), ValueError, "lr must be > 0"),
])
def test_rmsprop_bad_input(kwargs, error, match):
    p = np.zeros(3)
    args = dict(lr=0.1, buf=np.zeros(3))
    args.update(kwargs)
    buf = args.pop("buf")
    with pytest.raises(error, match=match):
        F.rmsprop_step(p, np.ones(3), np.zeros(3), buf, **args)
    with pytest.raises(ValueError, match="v must have shape"):
        F.rmsprop_step(p, np.ones(3), np.zeros(4), lr=0.1)
