"""Shared tolerances and fixtures.

Tolerances by dtype, from the error bounds of the operations compared:
- elementwise maths (exp, log1p, tanh, one division): both sides within a few
  ulp of the true value, so rtol = 8 eps (float32 ~1e-6, float64 ~2e-15);
  atol covers results that round to tiny numbers near zero.
- a length-k dot product: |fl(sum) - sum| <= k eps sum|a_i b_i| (Higham,
  gamma_k), for each side; `gemm_tolerance` returns that bound per element.
"""
import gzip
import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")



def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only when asked for (-m slow, or any -m expression)."""
    if config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


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


def run_with_simd(code, simd=None):
    """stdout of `python -c code` with NNCORE_SIMD=simd (None: unset, the default
    kernels); fails the test on a non-zero exit."""
    env = dict(os.environ)
    env.pop("NNCORE_SIMD", None)
    if simd:
        env["NNCORE_SIMD"] = simd
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def weights(model):
    """Copies of a model's parameters."""
    return [p.copy() for p in model.parameters()]


def assert_weights_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---- pickles (tests/test_io.py, tests/test_sklearn.py) ----

def pickled_globals(blob):
    """{(module, name)} of the classes and functions a pickle refers to (it is loaded,
    recording what it looks up)."""
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(blob)).load()
    return found


def only_numpy_and(blob, *allowed):
    """The pickle refers to NumPy's array reconstruction and the allowed classes only:
    nothing compiled of nncore (a plan, a kernel), no lock, no thread-local."""
    others = {g for g in pickled_globals(blob) if g[0].split(".")[0] != "numpy"}
    assert others == set(allowed), others


# ---- data files (tests/test_datasets.py, tests/test_cli.py) ----

def idx_bytes(magic, dims, data):
    """An IDX file: magic, the dimensions (big-endian uint32), then the bytes."""
    return (magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
            + bytes(data))


def write_idx(path, content, gz):
    """Write content to path, or gzipped to path + ".gz"; returns the path written."""
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(content)
        return str(path) + ".gz"
    path.write_bytes(content)
    return str(path)


def tiny_mnist(folder, kind="train", n=3, rows=28, cols=28, gz=False, seed=0):
    """MNIST-style IDX files <kind>-images-idx3-ubyte, <kind>-labels-idx1-ubyte (n random
    images, pixel [0, 0, :2] = 0, 255) in folder; returns pixels, labels and the two paths."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    pixels[0, 0, :2] = [0, 255]
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    images = write_idx(folder / f"{kind}-images-idx3-ubyte",
                       idx_bytes(2051, (n, rows, cols), pixels.tobytes()), gz)
    label_file = write_idx(folder / f"{kind}-labels-idx1-ubyte",
                           idx_bytes(2049, (n,), labels.tobytes()), gz)
    return pixels, labels, images, label_file


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
