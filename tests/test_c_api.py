"""nncore's C API (nncore/kernels.pxd and nncore.get_include()) as another package uses it.

A third-party Cython extension is built in a temporary folder with the toolchain this
Python reports (sysconfig's CC, CFLAGS, CCSHARED, LDSHARED and EXT_SUFFIX), against the
installed nncore only; it cimports the GEMM (with its epilogue), the dense layer, the
activations and the losses, calls them from its own nogil loops, and is checked against
NumPy."""
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import nncore
from nncore._kernels import codes

EXTENSION = r'''
# cython: language_level=3, boundscheck=False, wraparound=False
from nncore.kernels cimport (
    C_API_VERSION, Epilogue, sgemm, dgemm, dense_forward_f32, dense_forward_f64,
    dense_backward_f64, activation_forward_f64, activation_backward_f64, loss_f32,
    ACT_IDENTITY, ACT_TANH, ACT_RELU, ACT_SOFTMAX, LOSS_MSE, LOSS_HINGE, OPT_ADAM)

API_VERSION = C_API_VERSION
CODES = {"identity": ACT_IDENTITY, "tanh": ACT_TANH, "relu": ACT_RELU,
         "softmax": ACT_SOFTMAX, "mse": LOSS_MSE, "hinge": LOSS_HINGE, "adam": OPT_ADAM}


def gemm_in_blocks(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c,
                   Py_ssize_t block, int n_threads):
    """c = a @ b, `block` rows of c per sgemm call."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = b.shape[1], i, j
    cdef int rc = 0
    with nogil:
        for j in range((m + block - 1) // block):
            i = j * block
            rc = sgemm(min(block, m - i), n, k, 1.0, &a[i, 0], k, 1, &b[0, 0], n, 1,
                       0.0, &c[i, 0], n, NULL, n_threads)
            if rc != 0:
                break
    return rc


def gemm_epilogue(const double[:, ::1] a, const double[:, ::1] bt, const double[::1] bias,
                  double[:, ::1] c, double[:, ::1] act, int n_threads):
    """c = a @ bt.T + bias (bt.T by strides), act = tanh(c), in one dgemm."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = bt.shape[0]
    cdef Epilogue ep
    cdef int rc
    ep.bias = &bias[0]
    ep.act_out = &act[0, 0]
    ep.ld_act = n
    ep.activation = ACT_TANH
    ep.slope = 0
    with nogil:
        rc = dgemm(m, n, k, 1.0, &a[0, 0], k, 1, &bt[0, 0], 1, k, 0.0, &c[0, 0], n, &ep,
                   n_threads)
    return rc


def dense_in_batches(const float[:, ::1] x, const float[:, ::1] w, const float[::1] b,
                     float[:, ::1] z, float[:, ::1] a, Py_ssize_t batch, int n_threads):
    """a = relu(x @ w.T + b), one dense_forward_f32 call per batch of rows."""
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[0], i, j
    cdef int rc = 0
    with nogil:
        for j in range((n + batch - 1) // batch):
            i = j * batch
            rc = dense_forward_f32(min(batch, n - i), n_in, n_out, &x[i, 0], n_in, 1,
                                   &w[0, 0], n_in, 1, &b[0], ACT_RELU, 0.0, &z[i, 0],
                                   &a[i, 0], n_threads)
            if rc != 0:
                break
    return rc


def dense_layer(const double[:, ::1] xt, const double[:, ::1] w, const double[::1] b,
                const double[:, ::1] grad_a, double[:, ::1] z, double[:, ::1] a,
                double[:, ::1] grad_z, double[:, ::1] grad_x, double[:, ::1] grad_w,
                double[::1] grad_b, int n_threads):
    """Forward (softmax) and backward of a layer whose input is xt.T (by strides)."""
    cdef Py_ssize_t n_in = xt.shape[0], n = xt.shape[1], n_out = w.shape[0]
    cdef int rc
    with nogil:
        rc = dense_forward_f64(n, n_in, n_out, &xt[0, 0], 1, n, &w[0, 0], n_in, 1,
                               &b[0], ACT_SOFTMAX, 0.0, &z[0, 0], &a[0, 0], n_threads)
        if rc == 0:
            rc = dense_backward_f64(n, n_in, n_out, &xt[0, 0], 1, n, &w[0, 0], n_in, 1,
                                    &z[0, 0], &a[0, 0], &grad_a[0, 0], ACT_SOFTMAX, 0.0,
                                    &grad_z[0, 0], &grad_x[0, 0], &grad_w[0, 0],
                                    &grad_b[0], n_threads)
    return rc


def activation(int code, double slope, const double[:, ::1] z, const double[:, ::1] grad_a,
               double[:, ::1] a, double[:, ::1] grad_z, int n_threads):
    with nogil:
        activation_forward_f64(code, slope, &z[0, 0], &a[0, 0], z.shape[0], z.shape[1],
                               n_threads)
        activation_backward_f64(code, slope, &z[0, 0], &a[0, 0], &grad_a[0, 0],
                                &grad_z[0, 0], z.shape[0], z.shape[1], n_threads)


def mse_mean(const float[:, ::1] o, const float[:, ::1] t, const double[::1] s,
             float[:, ::1] g, int n_threads):
    cdef double value = 0
    cdef int rc
    with nogil:
        rc = loss_f32(LOSS_MSE, o.shape[0], o.shape[1], &o[0, 0], &t[0, 0], NULL, &s[0],
                      &g[0, 0], &value, n_threads)
    return rc, value


def hinge_with_labels(const float[:, ::1] o, const Py_ssize_t[::1] y, const double[::1] s,
                      float[:, ::1] g):
    cdef double value = 0
    cdef int rc
    with nogil:
        rc = loss_f32(LOSS_HINGE, o.shape[0], o.shape[1], &o[0, 0], NULL, &y[0], &s[0],
                      &g[0, 0], &value, 1)
    return rc, value
'''


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{shlex.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """The extension, cythonized and compiled the way a package depending on nncore would."""
    pytest.importorskip("Cython", minversion="3.1")
    cc = sysconfig.get_config_var("CC")
    if not cc or shutil.which(shlex.split(cc)[0]) is None:
        pytest.skip(f"the C compiler Python was built with ({cc}) is not installed")
    folder = tmp_path_factory.mktemp("c_api")
    name = "nncore_c_api_user"
    (folder / f"{name}.pyx").write_text(EXTENSION)
    include = nncore.get_include()
    _run([sys.executable, "-m", "cython", "-3", "-I", include, f"{name}.pyx",
          "-o", f"{name}.c"], folder)
    flags = shlex.split(sysconfig.get_config_var("CFLAGS") or "")
    flags += shlex.split(sysconfig.get_config_var("CCSHARED") or "")
    py_include = {sysconfig.get_paths()["include"], sysconfig.get_paths()["platinclude"]}
    _run(shlex.split(cc) + flags + ["-I", include] + [f"-I{p}" for p in sorted(py_include)]
         + ["-c", f"{name}.c", "-o", f"{name}.o"], folder)
    so = name + sysconfig.get_config_var("EXT_SUFFIX")
    _run(shlex.split(sysconfig.get_config_var("LDSHARED")) + [f"{name}.o", "-o", so], folder)
    spec = importlib.util.spec_from_file_location(name, folder / so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_include_holds_the_api():
    include = nncore.get_include()
    assert os.path.isabs(include)
    for path in ["nncore/kernels.pxd", "nncore/__init__.pxd", "nncore/_kernels/__init__.pxd",
                 "nncore/_kernels/gemm.pxd", "nncore/_kernels/dense.pxd",
                 "nncore/_kernels/codes.pxd", "nncore/_kernels/types.pxd",
                 "nncore/_kernels/codes.h", "nncore/_kernels/vmath.h"]:
        assert os.path.isfile(os.path.join(include, path)), path


def test_codes_are_the_packages(ext):
    """The header the extension compiled against is the table nncore was built with."""
    assert ext.API_VERSION == 1
    for name, code in ext.CODES.items():
        table = (codes.ACTIVATIONS if name in codes.ACTIVATIONS
                 else codes.LOSSES if name in codes.LOSSES else codes.OPTIMIZERS)
        assert code == table[name], name


@pytest.mark.parametrize("n_threads", [1, 2])
def test_gemm_from_a_nogil_loop(ext, rng, n_threads):
    a = rng.standard_normal((203, 300)).astype(np.float32)
    b = rng.standard_normal((300, 37)).astype(np.float32)
    c = np.full((203, 37), np.nan, np.float32)
    assert ext.gemm_in_blocks(a, b, c, 64, n_threads) == 0
    expected = a.astype(np.float64) @ b
    assert np.abs(c - expected).max() < 300 * 4 * np.finfo(np.float32).eps * np.abs(expected).max()
    whole = np.full_like(c, np.nan)
    assert ext.gemm_in_blocks(a, b, whole, 203, n_threads) == 0
    np.testing.assert_array_equal(c, whole)      # rows of C do not depend on the blocking


def test_gemm_epilogue(ext, rng):
    a = rng.standard_normal((50, 70))
    bt = rng.standard_normal((30, 70))
    bias = rng.standard_normal(30)
    c, act = np.full((50, 30), np.nan), np.full((50, 30), np.nan)
    assert ext.gemm_epilogue(a, bt, bias, c, act, 2) == 0
    np.testing.assert_allclose(c, a @ bt.T + bias, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(act, np.tanh(a @ bt.T + bias), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dense_forward_from_a_nogil_loop(ext, rng, n_threads):
    x = rng.standard_normal((130, 64)).astype(np.float32)
    w = rng.standard_normal((20, 64)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    z, a = np.full((130, 20), np.nan, np.float32), np.full((130, 20), np.nan, np.float32)
    assert ext.dense_in_batches(x, w, b, z, a, 32, n_threads) == 0
    z_ref = x.astype(np.float64) @ w.T + b
    np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(a, np.maximum(z, 0))


def test_dense_layer_forward_backward(ext, rng):
    x = rng.standard_normal((40, 12))
    w = rng.standard_normal((5, 12))
    b = rng.standard_normal(5)
    grad_a = rng.standard_normal((40, 5))
    z, a, grad_z = (np.full((40, 5), np.nan) for _ in range(3))
    grad_x, grad_w = np.full((40, 12), np.nan), np.full((5, 12), np.nan)
    grad_b = np.full(5, np.nan)
    xt = np.ascontiguousarray(x.T)
    assert ext.dense_layer(xt, w, b, grad_a, z, a, grad_z, grad_x, grad_w, grad_b, 1) == 0
    z_ref = x @ w.T + b
    e = np.exp(z_ref - z_ref.max(axis=1, keepdims=True))
    a_ref = e / e.sum(axis=1, keepdims=True)
    gz_ref = a_ref * (grad_a - (grad_a * a_ref).sum(axis=1, keepdims=True))
    tol = dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(z, z_ref, **tol)
    np.testing.assert_allclose(a, a_ref, **tol)
    np.testing.assert_allclose(grad_z, gz_ref, **tol)
    np.testing.assert_allclose(grad_b, gz_ref.sum(axis=0), **tol)
    np.testing.assert_allclose(grad_w, gz_ref.T @ x, **tol)
    np.testing.assert_allclose(grad_x, gz_ref @ w, **tol)


def test_activation_by_code(ext):
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    grad_a = np.array([[1.0, -2.0, 0.5, 1.5, -1.0]])
    a, grad_z = np.full_like(z, np.nan), np.full_like(z, np.nan)
    ext.activation(ext.CODES["relu"], 0.0, z, grad_a, a, grad_z, 1)
    np.testing.assert_array_equal(a, np.maximum(z, 0))
    np.testing.assert_array_equal(grad_z, np.where(z > 0, grad_a, 0))   # relu'(0) = 0
    ext.activation(ext.CODES["tanh"], 0.0, z, grad_a, a, grad_z, 1)
    np.testing.assert_allclose(a, np.tanh(z), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(grad_z, grad_a * (1 - np.tanh(z) ** 2), rtol=1e-14, atol=1e-16)


def test_losses(ext, rng):
    o = rng.standard_normal((9, 4)).astype(np.float32)
    t = rng.standard_normal((9, 4)).astype(np.float32)
    s = np.full(9, 1 / 9)
    g = np.full_like(o, np.nan)
    rc, value = ext.mse_mean(o, t, s, g, 1)
    d = o.astype(np.float64) - t
    assert rc == 0 and value == pytest.approx(0.5 * (d ** 2).sum(axis=1).mean(), rel=1e-12)
    np.testing.assert_allclose(g, d / 9, rtol=1e-6)
    assert ext.hinge_with_labels(o, np.array([0, 1, 2, 3, 0, 1, 2, 3, 4], np.intp), s, g)[0] == -2
