"""Shared tolerances and fixtures.

Tolerances by dtype, from the error bounds of the operations compared:
- elementwise maths (exp, log1p, tanh, one division): both sides within a few
  ulp of the true value, so rtol = 8 eps (float32 ~1e-6, float64 ~2e-15);
  atol covers results that round to tiny numbers near zero.
- a length-k dot product: |fl(sum) - sum| <= k eps sum|a_i b_i| (Higham,
  gamma_k), for each side; `gemm_tolerance` returns that bound per element.
"""
import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]

EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}
ELEMENTWISE = {
    np.float32: dict(rtol=8 * EPS[np.float32], atol=1e-7),
    np.float64: dict(rtol=8 * EPS[np.float64], atol=1e-15),
}


def tol(dtype):
    """assert_allclose keywords for elementwise results in dtype."""
    return ELEMENTWISE[np.dtype(dtype).type]


def gemm_tolerance(opa, opb, dtype):
    """Per-element bound 2 k eps (|A| @ |B|) + tiny for two length-k sums in dtype
    (ours and NumPy's, or ours and a float64 product)."""
    k = opa.shape[1]
    eps = EPS[np.dtype(dtype).type]
    mag = np.abs(opa.astype(np.float64)) @ np.abs(opb.astype(np.float64))
    return 2 * max(k, 1) * eps * mag + np.finfo(dtype).tiny


def weights(model):
    """Copies of a model's parameters."""
    return [p.copy() for p in model.parameters()]


def assert_weights_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
