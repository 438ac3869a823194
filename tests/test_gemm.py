"""The packed GEMM against float64 matmul and its NumPy twin."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from nncore import functional as F
from conftest import DTYPES, THREADS, gemm_tolerance, run_with_simd

MR, NR32, NR64, KC, MC32 = 6, 16, 8, 256, 144

# Sizes around the blocking: 1, MR +- 1, NR +- 1, KC +- 1, MC + 1, primes.
EDGE_SIZES = [1, 5, 7, 15, 17, 97, 145, 255, 257]


def operands(rng, m, n, k, dtype, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def check(a, b, out, dtype, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None):
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    want = alpha * (opa.astype(np.float64) @ opb.astype(np.float64))
    if beta != 0:
        want += beta * c0.astype(np.float64)
    bound = abs(alpha) * gemm_tolerance(opa, opb, dtype)
    if beta != 0:
        bound += 4 * np.finfo(dtype).eps * abs(beta) * np.abs(c0)
    err = np.abs(out.astype(np.float64) - want)
    assert out.dtype == dtype
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("n_threads", THREADS)
def test_edge_shapes(rng, dtype, trans_a, trans_b, n_threads):
    for m, n, k in [(1, 1, 1), (5, 17, 257), (7, 15, 255), (145, 97, 1),
                    (17, 7, 300), (150, 33, 513), (6, 16, 256),
                    (13, 100, 1024), (9, 70, 512),   # rows 4 KiB apart: A is packed
                    (300, 40, 600)]:                  # tall C, small B: B packed whole
        a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
        out = np.full((m, n), np.nan, dtype)   # beta == 0 must not read out
        F.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, n_threads=n_threads)
        check(a, b, out, dtype, trans_a, trans_b)


@given(m=st.sampled_from(EDGE_SIZES + [2, 3, 31, 64]),
       n=st.sampled_from(EDGE_SIZES + [2, 3, 31, 64]),
       k=st.sampled_from(EDGE_SIZES + [2, 3, 31, 64]),
       dtype=st.sampled_from(DTYPES), trans_a=st.booleans(), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, 0.25]),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes_alpha_beta(m, n, k, dtype, trans_a, trans_b, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    F.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    check(a, b, out, dtype, trans_a, trans_b, alpha, beta, c0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_larger_than_l2(rng, dtype):
    # 700 x 700 float64 operands are 3.9 MB each: several KC and MC blocks.
    a, b = operands(rng, 700, 650, 600, dtype, False, True)
    out = F.gemm(a, b, trans_b=True)
    check(a, b, out, dtype, False, True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_same_as_reference(rng, dtype, trans_a, trans_b):
    a, b = operands(rng, 37, 29, 41, dtype, trans_a, trans_b)
    c0 = rng.standard_normal((37, 29)).astype(dtype)
    ours = F.gemm(a, b, c0.copy(), trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0)
    twin = F.gemm(a, b, c0.copy(), trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0,
                  backend="numpy")
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    bound = 0.5 * gemm_tolerance(opa, opb, dtype) + 8 * np.finfo(dtype).eps * np.abs(c0)
    assert np.all(np.abs(ours.astype(np.float64) - twin) <= bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(128, 128, 784), (64, 784, 128), (300, 10, 64), (11, 500, 300)])
def test_threads_bitwise_equal(rng, dtype, shape):
    m, n, k = shape
    a, b = operands(rng, m, n, k, dtype, False, True)
    results = [F.gemm(a, b, trans_b=True, n_threads=t) for t in (1, 2, 3, 4)]
    for r in results[1:]:
        assert np.array_equal(results[0], r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_b_in_place_or_packed_bitwise_equal(rng, dtype):
    """Row-major B is read in place for short strips of C (m <= 36) and packed for
    taller ones: the same products either way, for any thread count -- also
    where strips of a tall C (B kept whole) fall under 36 rows."""
    a = rng.standard_normal((150, 1000)).astype(dtype)
    b = rng.standard_normal((1000, 40)).astype(dtype)          # row-major: cs_b == 1
    full = [F.gemm(a, b, n_threads=t) for t in (1, 2, 3, 4, 6)]
    for r in full[1:]:
        assert np.array_equal(full[0], r)
    for m in (1, 6, 13, 36):                                   # B read in place
        assert np.array_equal(F.gemm(a[:m], b, n_threads=1), full[0][:m])


TINY_CHECK = """
import numpy as np
from nncore import functional as F
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    # k = 1 (an outer product): rows of n < 8 and n >= 8 take different loops
    for k, n in ((1, 2), (1, 7), (1, 8), (1, 16), (2, 1), (3, 7), (16, 3)):
        a = rng.standard_normal((300, k)).astype(dt)
        b = rng.standard_normal((k, n)).astype(dt)
        w = np.ascontiguousarray(b.T)
        bias = rng.standard_normal(n).astype(dt)
        tall = F.gemm(a, b)                               # packed: 300 k n madds
        z_tall, a_tall = F.dense_forward(a, w, bias, "tanh")
        for m in (1, 3, 256 // (k * n)):                 # at most 256 madds: the plain loop
            assert np.array_equal(F.gemm(a[:m], b), tall[:m]), (dt, k, n, m)
            assert np.array_equal(F.gemm(a[:m].T.copy(), b, trans_a=True), tall[:m])
            z, act = F.dense_forward(a[:m], w, bias, "tanh")
            assert np.array_equal(z, z_tall[:m]) and np.array_equal(act, a_tall[:m])
print("ok")
"""


@pytest.mark.parametrize("simd", ["default", "generic"])
def test_tiny_products_bitwise_equal_the_packed_ones(simd):
    """Products of at most TINY_MAX_MADDS multiply-adds skip packing (a plain loop with
    the micro-kernel's accumulation chain): their rows are bitwise the rows of the same
    product with many more rows, which is packed -- with either micro-kernel, and with
    the bias and activation epilogue."""
    assert run_with_simd(TINY_CHECK, "generic" if simd == "generic" else None).strip() == "ok"


SIMD_CHECK = """
import hashlib, sys
import numpy as np
import nncore as nn
from nncore import functional as F
from nncore._kernels import gemm
rng = np.random.default_rng(1)
h = hashlib.sha256()
for dt in (np.float32, np.float64):
    # (32, 16, 784) and (50, 48, 30): one panel wide, and a lone last panel (f32); with
    # the transposed products, every edge of 1-5 rows, of one or two panels
    for m, n, k in ((37, 300, 23), (256, 200, 300), (7, 5, 600), (20, 100, 50),
                    (32, 16, 784), (50, 48, 30), (21, 40, 70), (9, 33, 20)):
        a = rng.standard_normal((m, k)).astype(dt)
        b = rng.standard_normal((k, n)).astype(dt)
        c = rng.standard_normal((m, n)).astype(dt)
        h.update(F.gemm(a, b).tobytes())
        h.update(F.gemm(a, b, c.copy(), alpha=0.3, beta=1.7).tobytes())
        h.update(F.gemm(b, a, trans_a=True, trans_b=True).tobytes())
    X = rng.standard_normal((300, 40)).astype(dt)
    y = rng.integers(0, 5, 300)
    for sizes in ([40, 64, 5], [40, 16, 16, 5]):
        model = nn.MLP(sizes, seed=0, dtype=np.dtype(dt).name)
        model.fit(X, y, loss="softmax_cross_entropy", epochs=2, batch_size=32)
        for p in model.parameters():
            h.update(p.tobytes())
print(gemm.SIMD_PATH, h.hexdigest())
"""


def test_avx512_kernels_give_the_avx2_bits():
    """The AVX-512 micro-kernels form each element with the same fma chain as the AVX2
    ones: GEMMs (alpha, beta, transposes) and whole fits hash the same on both."""
    runs = {}
    for simd in ("avx2", None):
        path, digest = run_with_simd(SIMD_CHECK, simd).split()
        runs[path] = digest
    if "avx512f" not in runs:
        pytest.skip(f"this CPU has no AVX-512 ({sorted(runs)} only): nothing to compare")
    assert runs["avx512f"] == runs["avx2+fma"]


def test_empty_and_k_zero():
    a = np.zeros((0, 5)); b = np.zeros((5, 3))
    assert F.gemm(a, b).shape == (0, 3)
    out = np.full((4, 3), np.nan)
    F.gemm(np.zeros((4, 0)), np.zeros((0, 3)), out)   # empty sum: zeros, not NaN
    assert np.array_equal(out, np.zeros((4, 3)))
    c = np.ones((2, 2))
    F.gemm(np.zeros((2, 0)), np.zeros((0, 2)), c, beta=3.0)
    assert np.array_equal(c, np.full((2, 2), 3.0))


def test_hand_worked():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    b = np.array([[5.0, 6.0], [7.0, 8.0]], np.float32)
    # [[1*5 + 2*7, 1*6 + 2*8], [3*5 + 4*7, 3*6 + 4*8]] = [[19, 22], [43, 50]]
    assert np.array_equal(F.gemm(a, b), [[19, 22], [43, 50]])
    # a.T @ b = [[1*5 + 3*7, 1*6 + 3*8], [2*5 + 4*7, 2*6 + 4*8]] = [[26, 30], [38, 44]]
    assert np.array_equal(F.gemm(a, b, trans_a=True), [[26, 30], [38, 44]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_read_only_and_aliasing(rng, dtype):
    a = rng.standard_normal((40, 30)).astype(dtype)
    b = rng.standard_normal((30, 20)).astype(dtype)
    want = a.astype(np.float64) @ b
    bound = gemm_tolerance(a, b, dtype)
    variants = [np.asfortranarray(a), a[::-1][::-1], a.copy()]
    ro = a.copy(); ro.flags.writeable = False
    variants.append(ro)
    for av in variants:
        assert np.all(np.abs(F.gemm(av, np.asfortranarray(b)) - want) <= bound)
    # every other column: a non-unit inner stride
    wide = np.zeros((40, 60), dtype); wide[:, ::2] = a
    assert np.all(np.abs(F.gemm(wide[:, ::2], b) - want) <= bound)
    # out aliasing an input: the result is still a @ b
    sq = rng.standard_normal((30, 30)).astype(dtype)
    want_sq = sq.astype(np.float64) @ sq
    bound_sq = gemm_tolerance(sq, sq, dtype)
    F.gemm(sq, sq, sq)
    assert np.all(np.abs(sq - want_sq) <= bound_sq)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_overlapping_an_input_or_odd_strides(dtype):
    """An input whose bytes may overlap out, or whose row stride is not a whole number
    of elements, is copied first (the kernel refuses it): the result is still a @ b.
    The product is tiny (240 multiply-adds), computed row by row, so a missed overlap
    would read rows of a that out has already overwritten."""
    base = np.arange(1.0, 101.0, dtype=dtype) / 7
    a, b = base[:60].reshape(12, 5), base[60:80].reshape(5, 4)
    want = a.astype(np.float64) @ b
    bound = gemm_tolerance(a, b, dtype)
    size = a.itemsize
    raw = np.zeros(12 * (5 * size + 1), np.uint8)     # rows 5 elements + 1 byte apart
    odd = np.ndarray((12, 5), dtype, raw, strides=(5 * size + 1, size))
    odd[...] = a
    assert np.array_equal(odd, a)
    assert np.all(np.abs(F.gemm(odd, b) - want) <= bound)
    out = base[40:88].reshape(12, 4)                  # its row 0 is a's row 8 (b is in it)
    F.gemm(a, b, out)
    assert np.all(np.abs(out - want) <= bound)


def test_bad_input_messages():
    a = np.ones((3, 4)); b = np.ones((5, 2))
    with pytest.raises(ValueError, match=r"inner dimensions 4 and 5"):
        F.gemm(a, b)
    with pytest.raises(ValueError, match=r"a must be 2-D, got a 1-D"):
        F.gemm(np.ones(3), b)
    for bad in (np.int64, np.float16, np.complex128, object):
        with pytest.raises(TypeError, match=r"a must have dtype float32 or float64"):
            F.gemm(np.ones((3, 4), dtype=bad), np.ones((4, 2)))
    with pytest.raises(TypeError, match=r"b has dtype float32 but a has float64"):
        F.gemm(np.ones((3, 4)), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 2\), got \(2, 3\)"):
        F.gemm(np.ones((3, 4)), np.ones((4, 2)), np.empty((2, 3)))
    with pytest.raises(TypeError, match=r"out must have dtype float64, got float32"):
        F.gemm(np.ones((3, 4)), np.ones((4, 2)), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        F.gemm(np.ones((3, 4)), np.ones((4, 2)), np.empty((2, 3)).T)
    with pytest.raises(ValueError, match=r"beta != 0 reads out"):
        F.gemm(np.ones((3, 4)), np.ones((4, 2)), beta=1.0)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        F.gemm(a, a.T, backend="fortran")
    with pytest.raises(ValueError, match=r"n_threads must be >= 1"):
        F.gemm(a, a.T, n_threads=0)
    with pytest.raises(TypeError, match=r"alpha must be a real number"):
        F.gemm(a, a.T, alpha="2")


def test_generic_kernel_matches(tmp_path):
    """The portable micro-kernel (NNCORE_SIMD=generic) computes the same products."""
    code = (
        "import numpy as np, nncore\n"
        "from nncore import functional as F\n"
        "from nncore._kernels import gemm\n"
        "assert gemm.SIMD_PATH == 'generic', gemm.SIMD_PATH\n"
        "rng = np.random.default_rng(0)\n"
        "for dt in (np.float32, np.float64):\n"
        "    a = rng.standard_normal((37, 300)).astype(dt)\n"
        "    b = rng.standard_normal((300, 23)).astype(dt)\n"
        "    err = np.abs(F.gemm(a, b) - a.astype(np.float64) @ b).max()\n"
        "    assert err < 300 * 2 * np.finfo(dt).eps * 30, (dt, err)\n"
        "print('ok')\n")
    assert run_with_simd(code, "generic").strip() == "ok"
