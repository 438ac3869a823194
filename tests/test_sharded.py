"""The gradient phase with given row scales and without the l2 term (what sharded steps
use), and fit(..., grad_shards=G), the one-process twin of nncore.distributed.fit."""
import hashlib

import numpy as np
import pytest

import nncore as nn
from nncore import _sharded

from test_engine import CASES, N, OPTIMIZERS, data, model


def digest(m):
    return hashlib.sha256(b"".join(p.tobytes() for p in m.parameters())).hexdigest()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("loss, first, last", CASES)
def test_gradients_with_scale_w_over_sum_w_is_the_default(dtype, backend, loss, first, last):
    X, y = data(loss)
    X = X.astype(dtype)
    w = np.linspace(0.1, 1, N)
    a, b = model((first, last), dtype, backend), model((first, last), dtype, backend)
    la, lb = nn.losses.get(loss), nn.losses.get(loss)
    opt = OPTIMIZERS["adam"]()
    pa, pb = a._plan(la, opt, N), b._plan(lb, opt, N)
    target = la.targets(y, N, 4, a.dtype)
    t, yy = (None, target) if target.ndim == 1 else (target, None)
    ra = pa.gradients(X, t, yy, w, 1)
    # the compiled plan sums w in row order, its twin with numpy.sum
    wsum = sum(w.tolist()) if backend == "compiled" else w.sum()
    rb = pb.gradients(X, t, yy, None, 1, scale=w / wsum)
    assert ra == rb
    for g, h in zip(a.gradients(), b.gradients()):
        assert np.array_equal(g, h)
    # l2=False: no penalty in the loss, no l2 W in grad_W (the model has l2 = 1e-3)
    sa, va, _ = pa.gradients(X, t, yy, None, 1, scale=np.full(N, 1.0 / N), l2=False)
    sb, vb, _ = pb.gradients(X, t, yy, None, 1)
    penalty = sum(0.5 * 1e-3 * float(np.sum(layer.weight.astype(np.float64) ** 2))
                  for layer in b.layers)
    assert sa == sb == 0
    assert va != vb and abs(vb - va - penalty) <= 1e-6 * penalty
    for la_, lb_ in zip(a.layers, b.layers):
        want = (la_.grad_weight + 1e-3 * la_.weight.astype(np.float64)).astype(dtype)
        np.testing.assert_allclose(want, lb_.grad_weight, rtol=1e-5 if dtype == "float32"
                                   else 1e-12, atol=1e-7)
        assert not np.array_equal(la_.grad_weight, lb_.grad_weight)


def test_gradients_checks_scale():
    X, y = data("mse")
    m = model(("relu", "identity"))
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), N)
    with pytest.raises(TypeError, match="scale"):
        plan.gradients(X, y, None, None, 1, scale=np.ones(N - 1))
    with pytest.raises(TypeError, match="scale"):
        plan.gradients(X, y, None, None, 1, scale=np.ones(N, dtype=np.float32))


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_step_is_still_gradients_then_apply_with_scale(backend):
    """A step whose gradients come from scale= equals the fused step."""
    X, y = data("softmax_cross_entropy")
    w = np.linspace(0.5, 1, N)
    a, b = model(("softmax", "identity"), backend=backend), model(("softmax", "identity"),
                                                                 backend=backend)
    loss = nn.losses.get("softmax_cross_entropy")
    oa, ob = OPTIMIZERS["nesterov"](), OPTIMIZERS["nesterov"]()
    pa, pb = a._plan(loss, oa, N), b._plan(loss, ob, N)
    ya = loss.targets(y, N, 4, a.dtype)
    ra = pa.step(X, None, ya, w, 0.1, 0, 2)
    wsum = sum(w.tolist()) if backend == "compiled" else w.sum()
    s, v, acc = pb.gradients(X, None, ya, None, 2, scale=w / wsum)
    st, step = pb.apply(0.1, 0, 2)
    assert ra == (st, v, acc, step)
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p, q)


def test_tree_frontiers_cover_the_leaves_and_give_the_same_root():
    rng = np.random.default_rng(0)
    for G in (1, 2, 3, 4, 6, 8, 12):
        tree = _sharded.Tree(G)
        leaves = {(0, g): rng.standard_normal(5).astype(np.float32) for g in range(G)}
        want = tree.root(dict(leaves))
        for P in [p for p in range(1, G + 1) if G % p == 0]:
            per = G // P
            known = {}
            for r in range(P):
                front = tree.frontier(r * per, (r + 1) * per)
                mine = {k: v for k, v in leaves.items() if r * per <= k[1] < (r + 1) * per}
                for key in front:
                    known[key] = tree.node(*key, dict(mine))
            assert np.array_equal(tree.root(known), want), (G, P)
    # G = 4: ((0 + 1) + (2 + 3))
    a = [np.float32(x) for x in (1e8, 1.0, -1e8, 1.0)]
    assert _sharded.Tree(4).root({(0, g): a[g] for g in range(4)}) == (a[0] + a[1]) + (a[2] + a[3])


def test_grad_shards_1_is_todays_fit_and_2_4_differ_but_train():
    X, y = data("softmax_cross_entropy")
    runs = {}
    for G in (None, 1, 4):
        m = model(("relu", "identity"))
        kw = {} if G is None else dict(grad_shards=G)
        h = m.fit(X, y, loss="softmax_cross_entropy", optimizer=OPTIMIZERS["adam"](),
                  epochs=4, batch_size=16, **kw)
        runs[G] = (digest(m), h.history)
    assert runs[None] == runs[1]
    assert runs[4][0] != runs[1][0]
    assert runs[4][1]["loss"][-1] < runs[4][1]["loss"][0]


@pytest.mark.parametrize("opt", ["nesterov", "adam"])
def test_grad_shards_same_bits_at_any_thread_count(opt):
    """Shards of 64 rows of a 100-512-4 network: ~14 MFLOP a shard step, so the compiled
    phases run on up to 4 threads (one per 2 MFLOP)."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 100))
    y = rng.integers(0, 4, 300)
    w = np.linspace(0, 1, 300)
    seen = set()
    for threads in (1, 2, 4):
        m = nn.Sequential([nn.Dense(100, 512, "relu"), nn.Dense(512, 4)], seed=3, l2=1e-4)
        with nn.threads(threads):
            h = m.fit(X, y, loss="softmax_cross_entropy", optimizer=OPTIMIZERS[opt](),
                      epochs=2, batch_size=256, grad_shards=4, sample_weight=w)
        seen.add((digest(m), str(h.history)))
    assert len(seen) == 1


def test_grad_shards_checks_its_arguments():
    X, y = data("mse")
    m = model(("relu", "identity"))
    with pytest.raises(ValueError, match="grad_shards"):
        m.fit(X, y, loss="mse", batch_size=16, grad_shards=0)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, y, loss="mse", batch_size=10, grad_shards=4)


def test_grad_shards_resume_from_a_file_continues_bitwise(tmp_path):
    X, y = data("softmax_cross_entropy")
    a = model(("relu", "identity"))
    a.fit(X, y, loss="softmax_cross_entropy", optimizer=OPTIMIZERS["adam"](), epochs=4,
          batch_size=16, grad_shards=2)
    b = model(("relu", "identity"))
    b.fit(X, y, loss="softmax_cross_entropy", optimizer=OPTIMIZERS["adam"](), epochs=2,
          batch_size=16, grad_shards=2)
    b.save(tmp_path / "half.npz")
    c = nn.load(tmp_path / "half.npz")
    c.fit(X, y, epochs=2, batch_size=16, grad_shards=2)
    assert digest(c) == digest(a)


def _flat(arrays):
    return np.concatenate([a.reshape(-1) for a in arrays])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("loss, first, last", CASES)
def test_shard_gradients_is_gradients_of_each_shard_then_the_additions(loss, first, last,
                                                                       backend, dtype,
                                                                       threads):
    """Shards of 20, 0, 16 and 9 rows of a shuffled order: each row of leaves is
    gradients(rows, scale=, l2=False) of its shard, flat; adds run in order, in place."""
    X, y = data(loss)
    X = X.astype(dtype)
    rng = np.random.default_rng(5)
    order = rng.permutation(N)
    scale = rng.random(N)
    shards = np.array([[0, 20], [20, 0], [30, 16], [60, 9]], dtype=np.intp)
    adds = np.array([[0, 2], [3, 1], [0, 3]], dtype=np.intp)     # (1: no rows, holds 0)
    a, b = model((first, last), dtype, backend), model((first, last), dtype, backend)
    la = nn.losses.get(loss)
    pa, pb = a._plan(la, OPTIMIZERS["adam"](), 32), b._plan(la, OPTIMIZERS["adam"](), 32)
    target = la.targets(y, N, 4, a.dtype)
    t, yy = (None, target) if target.ndim == 1 else (target, None)
    before = [g.copy() for g in a.gradients()]
    leaves = np.full((4, sum(g.size for g in before)), np.nan, dtype=dtype)
    leaves[1] = 0
    results = np.full((4, 3), np.nan)
    assert pa.shard_gradients(X, t, yy, order, scale, shards, leaves, adds, results,
                              threads) == 0
    if backend == "compiled":                  # the model's arrays are not touched
        assert all(np.array_equal(g, h) for g, h in zip(a.gradients(), before))
    want = np.zeros_like(leaves)
    for s, (start, count) in enumerate(shards):
        if count == 0:
            assert results[s].tolist() == [0, 0, 0]
            continue
        idx = order[start:start + count]
        r = pb.gradients(np.ascontiguousarray(X[idx]),
                         None if t is None else np.ascontiguousarray(t[idx]),
                         None if yy is None else yy[idx], None, threads,
                         scale=scale[start:start + count], l2=False)
        assert tuple(results[s]) == r
        want[s] = _flat(b.gradients())
    want[0] = want[0] + want[2]
    want[3] = want[3] + want[1]
    want[0] = want[0] + want[3]
    assert np.array_equal(leaves[[0, 3]], want[[0, 3]])
    assert np.array_equal(leaves[2], want[2])


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_shard_gradients_makes_no_additions_when_a_loss_is_not_finite(backend):
    X, y = data("mse")
    X[40] = np.inf
    m = model(("relu", "identity"), backend=backend)
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), 32)
    order = np.arange(N)
    shards = np.array([[0, 30], [30, 30]], dtype=np.intp)
    leaves = np.zeros((2, sum(g.size for g in m.gradients())))
    results = np.zeros((2, 3))
    with np.errstate(invalid="ignore", over="ignore"):
        status = plan.shard_gradients(X, y, None, order, np.full(N, 1 / 60), shards, leaves,
                                      np.array([[0, 1]], dtype=np.intp), results, 1)
    assert status == 1 and results[0, 0] == 0 and results[1, 0] == 1
    assert not np.isfinite(results[1, 1])
    assert np.array_equal(leaves[0], _flat(_reference_gradients(m, X[:30], y[:30], 60)))


def _reference_gradients(m, X, y, B):
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), 32)
    plan.gradients(X, y, None, None, 1, scale=np.full(len(X), 1 / B), l2=False)
    return m.gradients()


def test_shard_gradients_checks_its_arguments():
    X, y = data("mse")
    m = model(("relu", "identity"))
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), 32)
    n = sum(g.size for g in m.gradients())
    order, scale = np.arange(N), np.ones(N)
    shards = np.array([[0, 30]], dtype=np.intp)
    leaves, adds, results = np.zeros((1, n)), np.zeros((0, 2), dtype=np.intp), np.zeros((1, 3))
    ok = dict(order=order, scale=scale, shards=shards, leaves=leaves, adds=adds,
              results=results)

    def call(**kw):
        a = dict(ok, **kw)
        return plan.shard_gradients(X, y, None, a["order"], a["scale"], a["shards"],
                                    a["leaves"], a["adds"], a["results"], 1)

    assert call() == 0
    with pytest.raises(TypeError, match="leaves"):
        call(leaves=np.zeros((1, n), dtype=np.float32))
    with pytest.raises(TypeError, match="leaves"):
        call(leaves=np.zeros((2, n)))
    with pytest.raises(ValueError, match="shard 0"):
        call(shards=np.array([[60, 30]], dtype=np.intp))
    with pytest.raises(ValueError, match="shard 0"):
        call(shards=np.array([[0, 33]], dtype=np.intp))          # above batch_max
    with pytest.raises(ValueError, match="outside"):
        call(order=np.r_[N, np.arange(1, N)].astype(np.intp))
    with pytest.raises(ValueError, match="adds"):
        call(adds=np.array([[0, 0]], dtype=np.intp))
    with pytest.raises(ValueError, match="scale"):
        call(scale=np.ones(N - 1))
    frozen = leaves.copy()
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="leaves"):
        call(leaves=frozen)


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_apply_from_is_apply_of_the_flat_gradient_plus_l2(backend, opt, keep):
    """apply_from(flat, l2=True) == grads := flat; grad_W += l2 W (in float64); apply."""
    X, y = data("softmax_cross_entropy")
    a, b = model(("relu", "identity"), backend=backend), model(("relu", "identity"),
                                                              backend=backend)
    loss = nn.losses.get("softmax_cross_entropy")
    pa, pb = a._plan(loss, OPTIMIZERS[opt](), N), b._plan(loss, OPTIMIZERS[opt](), N)
    rng = np.random.default_rng(2)
    step = 0
    for _ in range(3):
        flat = rng.standard_normal(sum(g.size for g in a.gradients()))
        off = 0
        for g, layer in zip(b.gradients(), [x for la in b.layers for x in la.gradients()]):
            g.reshape(-1)[...] = flat[off:off + g.size]
            off += g.size
        for layer in b.layers:
            layer.grad_weight[...] = layer.grad_weight + 1e-3 * layer.weight.astype(np.float64)
        got = pa.apply_from(flat, 0.05, step, True, keep and step > 0, 1)
        assert got == pb.apply(0.05, step, 1)
        step = got[1]
        assert np.array_equal(flat, _flat(b.gradients()))            # the l2 term, in place
        for p, q in zip(a.parameters(), b.parameters()):
            assert np.array_equal(p, q)
    if backend == "compiled":                  # (the NumPy twin validates nothing)
        with pytest.raises(TypeError, match="grad"):
            pa.apply_from(flat[:-1], 0.05, step, True, False, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_add_l2_on_slices_is_apply_froms_l2_term(backend, dtype):
    """add_l2(flat, lo, hi) over slices that cut layers anywhere == the l2 term
    apply_from(l2=True) adds in place (grad_W += l2 W in float64; biases untouched)."""
    m = model(("relu", "identity"), backend=backend, dtype=dtype)
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), N)
    size = sum(g.size for g in m.gradients())
    flat = np.random.default_rng(3).standard_normal(size).astype(dtype)
    want = flat.copy()
    plan.apply_from(want, 0.0, 0, True, False, 1)       # lr 0: only the l2 term moves
    cuts = [0, 1, 7, size // 3, size // 3, size - 2, size]
    got = flat.copy()
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        plan.add_l2(got, lo, hi)
    assert np.array_equal(got, want) and not np.array_equal(got, flat)
    if backend == "compiled":
        with pytest.raises(ValueError, match="hi="):
            plan.add_l2(got, 0, size + 1)
        with pytest.raises(TypeError, match="grad"):
            plan.add_l2(got[:-1], 0, 1)


def test_apply_from_refuses_a_gradient_that_is_not_finite():
    m = model(("relu", "identity"))
    plan = m._plan(nn.losses.get("mse"), OPTIMIZERS["sgd"](), 16)
    before = [p.copy() for p in m.parameters()]
    flat = np.zeros(sum(g.size for g in m.gradients()))
    flat[-1] = np.nan
    assert plan.apply_from(flat, 0.1, 4, False, False, 1) == (2, 4)
    assert all(np.array_equal(p, q) for p, q in zip(m.parameters(), before))
