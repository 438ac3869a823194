"""Dense, Sequential and MLP through the public API: structure, forward and backward,
predict / predict_proba / evaluate, how fit uses its data, and bad input.

Models are tiny (a few dozen parameters, tens of samples): each fit takes milliseconds.
"""
import numpy as np
import pytest

from nncore import MLP, Dense, Sequential
from nncore.callbacks import EarlyStopping, LambdaCallback
from nncore.init import DRAW_BLOCK, initial_weight
from nncore.optim import SGD, Adam
from conftest import assert_weights_equal, weights


def blobs(n=48, n_features=3, n_classes=3, seed=0):
    """Class c is a cloud of std 0.5 around 2 e_c: separable with a few errors."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = 0.5 * rng.standard_normal((n, n_features))
    X[np.arange(n), y] += 2.0
    return X, y


def regression(n=32, n_features=3, seed=0):
    """y = X @ [1, 2, 3] + noise of std 0.1, as a column (n, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = X @ np.arange(1.0, n_features + 1)[:, None] + 0.1 * rng.standard_normal((n, 1))
    return X, y


def built(layer, dtype=np.float64, seed=0):
    return layer.build(np.random.default_rng(seed), dtype)


# ---- Dense ------------------------------------------------------------------------

def test_dense_hand_worked():
    layer = built(Dense(2, 2, "relu"))
    layer.weight[...] = [[0.5, -1.0], [2.0, 1.0]]
    layer.bias[...] = [0.5, 2.0]
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])
    a = layer.forward(x)
    # z = x @ w.T + b
    #   row 0: [1*0.5 + 2*(-1) + 0.5,    1*2 + 2*1 + 2]    = [-1, 6]
    #   row 1: [-1*0.5 + 0.5*(-1) + 0.5, -1*2 + 0.5*1 + 2] = [-0.5, 0.5]
    # a = relu(z) = [[0, 6], [0, 0.5]]
    assert a.tolist() == [[0.0, 6.0], [0.0, 0.5]]
    grad_x = layer.backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    # dz = da * relu'(z) = [[0, 2], [0, 4]]              (relu' = 0 where z < 0)
    # grad_weight = dz.T @ x: row 0 = 0, row 1 = 2*[1, 2] + 4*[-1, 0.5] = [-2, 6]
    # grad_bias = dz.sum(0) = [0, 6]
    # dx = dz @ w = [2*[2, 1], 4*[2, 1]] = [[4, 2], [8, 4]]
    assert layer.grad_weight.tolist() == [[0.0, 0.0], [-2.0, 6.0]]
    assert layer.grad_bias.tolist() == [0.0, 6.0]
    assert grad_x.tolist() == [[4.0, 2.0], [8.0, 4.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_shapes(dtype):
    layer = Dense(3, 5, "tanh")
    assert not layer.built and layer.weight is None
    built(layer, dtype)
    assert layer.weight.shape == layer.grad_weight.shape == (5, 3)      # (out, in)
    assert layer.bias.shape == layer.grad_bias.shape == (5,)
    assert all(p.dtype == dtype for p in layer.parameters() + layer.gradients())
    assert not layer.bias.any()                                        # biases start at 0
    no_bias = built(Dense(3, 5, bias=False), dtype)
    assert no_bias.parameters() == [no_bias.weight]


def test_dense_before_build():
    layer = Dense(2, 3)
    with pytest.raises(RuntimeError, match="no weights yet"):
        layer.forward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        built(layer).backward(np.ones((1, 3)))


def test_dense_default_init():
    assert Dense(2, 2, "relu").init == "he"
    assert Dense(2, 2, "leaky_relu").init == "he"
    assert Dense(2, 2, "tanh").init == "xavier"
    assert Dense(2, 2).init == "xavier"


# Initialisers: 300 x 200 = 60,000 draws. The relative standard error of a sample
# std is about 1/sqrt(2N) = 0.3% for normal draws (less for uniform ones), so a 2%
# tolerance is ~7 standard errors; the mean is checked to 6 standard errors, std/sqrt(N).
N_IN, N_OUT = 300, 200


def drawn(init):
    return built(Dense(N_IN, N_OUT, init=init)).weight


def check_moments(w, std):
    assert abs(w.mean()) < 6 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.02)


def test_init_small():
    check_moments(drawn("small"), 0.01)


def test_init_he():
    check_moments(drawn("he"), np.sqrt(2 / N_IN))


@pytest.mark.parametrize("init", ["xavier", "glorot"])
def test_init_xavier(init):
    w = drawn(init)
    limit = np.sqrt(6 / (N_IN + N_OUT))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit       # P(all 60,000 below) = 0.995**60000 ~ 0
    check_moments(w, limit / np.sqrt(3))        # U(-l, l) has std l / sqrt(3)


@pytest.mark.parametrize("init, whole", [
    ("small", lambda rng, s: 0.01 * rng.standard_normal(s)),
    ("he", lambda rng, s: rng.standard_normal(s) * np.sqrt(2.0 / s[1])),
    ("xavier", lambda rng, s: rng.uniform(-np.sqrt(6.0 / sum(s)), np.sqrt(6.0 / sum(s)), s))])
@pytest.mark.parametrize("shape", [(300, 700), (3, DRAW_BLOCK + 5), (DRAW_BLOCK + 3, 1)])
def test_init_block_draws_equal_one_whole_draw(init, whole, shape):
    # initial_weight draws DRAW_BLOCK values at a time (bounded temporaries); the
    # weights must still be those of one float64 draw of the whole matrix, so a
    # float32 model is the rounding of the float64 model with the same seed
    expected = whole(np.random.default_rng(3), shape)
    for dtype in (np.float64, np.float32):
        w = initial_weight(init, *shape, np.random.default_rng(3), dtype)
        assert w.dtype == dtype and w.flags.c_contiguous
        np.testing.assert_array_equal(w, expected.astype(dtype))


def test_init_zeros_warns():
    with pytest.warns(RuntimeWarning, match="symmetry"):
        model = Sequential([Dense(3, 2, init="zeros")])
    assert not model.layers[0].weight.any()


def test_init_same_seed_same_weights():
    assert_weights_equal(weights(MLP([3, 4, 2], seed=7)), weights(MLP([3, 4, 2], seed=7)))
    a, b = MLP([3, 4, 2], seed=7), MLP([3, 4, 2], seed=8)
    assert not np.array_equal(a.layers[0].weight, b.layers[0].weight)


# ---- Sequential / MLP structure ------------------------------------------------------

def test_layer_chaining_errors():
    with pytest.raises(ValueError, match=r"layers\[1\] takes 4 inputs but layers\[0\] gives 3"):
        Sequential([Dense(2, 3), Dense(4, 1)])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a Dense layer, got str"):
        Sequential([Dense(2, 3), "relu"])
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential([])
    with pytest.raises(ValueError, match="sizes must list at least"):
        MLP([3])


def test_mlp_structure():
    model = MLP([3, 5, 4, 2], activation="tanh", seed=0)
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh", "identity"]
    assert [layer.weight.shape for layer in model.layers] == [(5, 3), (4, 5), (2, 4)]
    assert model.n_inputs == 3 and model.n_outputs == 2
    assert model.n_parameters() == (5 * 3 + 5) + (4 * 5 + 4) + (2 * 4 + 2)
    params = model.parameters()
    assert len(params) == 6
    for i, layer in enumerate(model.layers):        # the arrays themselves, not copies
        assert params[2 * i] is layer.weight and params[2 * i + 1] is layer.bias
    assert model.dtype == np.float32


def test_zero_grad():
    model = MLP([3, 4, 2], seed=0, dtype="float64")
    X, _ = blobs(n=6)
    model.forward(X)
    model.backward(np.ones((6, 2)))
    grads = model.gradients()
    assert all(g.any() for g in grads)
    model.zero_grad()
    assert all(g is h for g, h in zip(grads, model.gradients()))
    assert not any(g.any() for g in model.gradients())


def test_forward_returns_a_new_array():
    model = MLP([3, 4, 2], seed=0)
    X, _ = blobs(n=5)
    out = model.forward(X)
    kept = out.copy()
    model.forward(-X)                   # reuses the layers' workspaces
    np.testing.assert_array_equal(out, kept)
    out[...] = 0                        # writing to it does not touch the model
    np.testing.assert_array_equal(model.forward(X), kept)


def test_backward_matches_finite_differences():
    """L = sum(forward(X) * R), so dL/d output = R. Central differences in float64
    with h = 1e-6: truncation ~h^2 and rounding ~1e-16 / h, both far below 1e-7."""
    rng = np.random.default_rng(0)
    model = MLP([3, 4, 2], activation="tanh", seed=0, dtype="float64")
    for layer in model.layers:
        layer.bias[...] = rng.standard_normal(layer.n_out)
    X = rng.standard_normal((5, 3))
    R = rng.standard_normal((5, 2))

    def loss():
        return float(np.sum(model.forward(X) * R))

    model.forward(X)
    grad_x = model.backward(R)
    grads = [g.copy() for g in model.gradients()]
    h = 1e-6
    numeric_x = np.empty_like(X)
    for idx in np.ndindex(X.shape):
        orig = X[idx]
        X[idx] = orig + h
        up = loss()
        X[idx] = orig - h
        numeric_x[idx] = (up - loss()) / (2 * h)
        X[idx] = orig
    np.testing.assert_allclose(grad_x, numeric_x, rtol=1e-7, atol=1e-8)
    for p, g in zip(model.parameters(), grads):
        numeric = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            orig = p[idx]
            p[idx] = orig + h
            up = loss()
            p[idx] = orig - h
            numeric[idx] = (up - loss()) / (2 * h)
            p[idx] = orig
        np.testing.assert_allclose(g, numeric, rtol=1e-7, atol=1e-8)


def test_backward_errors():
    model = MLP([3, 4, 2], seed=0)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones((2, 2), np.float32))
    model.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(2, 2\)"):
        model.backward(np.ones((2, 3), np.float32))


# ---- predict, predict_proba, evaluate --------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    """An MLP trained on blobs; tests only read it."""
    X, y = blobs()
    model = MLP([3, 8, 3], seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(lr=0.5), epochs=30,
              batch_size=16)
    return model, X, y


def test_predict_labels(classifier):
    model, X, y = classifier
    labels = model.predict(X)
    assert labels.shape == (len(X),) and labels.dtype.kind in "iu"
    np.testing.assert_array_equal(labels, np.argmax(model.forward(X), axis=1))
    assert np.mean(labels == y) > 0.9                   # it learnt the blobs


def test_predict_proba_softmax(classifier):
    model, X, _ = classifier
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)   # float32
    np.testing.assert_array_equal(np.argmax(proba, axis=1), model.predict(X))


def test_evaluate(classifier):
    model, X, y = classifier
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    # softmax cross entropy from the float32 logits, in float64: mean(logsumexp(o) - o_y)
    o = model.forward(X).astype(np.float64)
    m = o.max(axis=1)
    expected = np.mean(m + np.log(np.exp(o - m[:, None]).sum(axis=1)) - o[np.arange(len(y)), y])
    assert result["loss"] == pytest.approx(expected, rel=1e-10)
    assert result["accuracy"] == np.mean(model.predict(X) == y)
    half = np.r_[np.ones(24), np.zeros(24)]              # sample_weight selects samples
    assert model.evaluate(X, y, sample_weight=half)["loss"] == pytest.approx(
        model.evaluate(X[:24], y[:24])["loss"], rel=1e-10)


def test_predict_proba_sigmoid():
    X, y = blobs(n_classes=2)
    model = MLP([3, 4, 1], seed=0, dtype="float64")
    model.fit(X, y[:, None].astype(float), loss="binary_cross_entropy",
              optimizer=SGD(lr=0.5), epochs=5)
    out = model.forward(X)
    np.testing.assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-out)), rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), (out[:, 0] > 0).astype(int))
    assert set(model.evaluate(X, y[:, None].astype(float))) == {"loss", "accuracy"}


def test_predict_hinge_has_no_proba():
    X, y = blobs()
    model = MLP([3, 4, 3], seed=0)
    model.fit(X, y, loss="hinge", epochs=1)
    assert model.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="hinge does not model probabilities"):
        model.predict_proba(X)


def test_predict_mse_is_the_output():
    X, y = regression()
    model = MLP([3, 4, 1], seed=0)
    model.fit(X, y, loss="mse", epochs=1)
    np.testing.assert_array_equal(model.predict(X), model.forward(X))
    assert set(model.evaluate(X, y)) == {"loss"}


def test_before_fit():
    model = MLP([3, 4, 3], seed=0)
    X, y = blobs(n=6)
    for method in (model.predict, model.predict_proba):
        with pytest.raises(RuntimeError, match="fit it first"):
            method(X)
    with pytest.raises(RuntimeError, match="fit it first"):
        model.evaluate(X, y)
    assert "loss" in model.evaluate(X, y, loss="softmax_cross_entropy")


@pytest.mark.parametrize("last, loss", [("softmax", "softmax_cross_entropy"),
                                        ("sigmoid", "binary_cross_entropy"),
                                        ("relu", "hinge")])
def test_logit_losses_need_a_linear_last_layer(last, loss):
    model = MLP([3, 4, 3], output_activation=last, seed=0)
    before = weights(model)
    X, y = blobs(n=6)
    y = y if loss != "binary_cross_entropy" else np.eye(3)[y]
    with pytest.raises(ValueError, match=f"{loss} takes the last layer's raw outputs"):
        model.fit(X, y, loss=loss)
    assert_weights_equal(weights(model), before)


# ---- fit: what it does with the data ---------------------------------------------------

def test_history_keys_per_epoch():
    X, y = blobs()
    model = MLP([3, 4, 3], seed=0)
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=3,
                        validation_data=(X[:12], y[:12]))
    assert history is model.history
    assert history.epoch == [0, 1, 2]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(history[k]) == 3 for k in history.history)
    assert all(np.isfinite(history[k]).all() for k in history.history)
    assert not history.stopped_early and not history.interrupted
    Xr, yr = regression()
    history = MLP([3, 4, 1], seed=0).fit(Xr, yr, loss="mse", epochs=2)
    assert sorted(history.history) == ["loss"] and len(history["loss"]) == 2


def test_validation_data_is_evaluated_after_each_epoch():
    X, y = blobs()
    Xv, yv = blobs(n=12, seed=1)
    model = MLP([3, 4, 3], seed=0)
    seen = []
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=2, validation_data=(Xv, yv),
                        callbacks=[LambdaCallback(on_epoch_end=lambda e, logs:
                                                  seen.append(model.evaluate(Xv, yv)))])
    assert history["val_loss"] == [r["loss"] for r in seen]
    assert history["val_accuracy"] == [r["accuracy"] for r in seen]


def test_validation_split_takes_the_last_fraction_before_shuffling():
    X, y = blobs()                                      # 48 samples: the last 12 validate
    a = MLP([3, 4, 3], seed=0)
    ha = a.fit(X, y, loss="softmax_cross_entropy", epochs=2, batch_size=8,
               validation_split=0.25)
    b = MLP([3, 4, 3], seed=0)
    hb = b.fit(X[:36], y[:36], loss="softmax_cross_entropy", epochs=2, batch_size=8,
               validation_data=(X[36:], y[36:]))
    assert_weights_equal(weights(a), weights(b))
    assert ha.history == hb.history


def batch_sizes(batch_size, n=10, epochs=2):
    """The size of each batch fit trains on, per epoch."""
    X, y = regression(n=n)
    sizes = [[] for _ in range(epochs)]
    MLP([3, 2, 1], seed=0).fit(
        X, y, loss="mse", epochs=epochs, batch_size=batch_size,
        callbacks=[LambdaCallback(on_batch_end=lambda b, logs:
                                  sizes[logs["epoch"]].append(logs["size"]))])
    return sizes


@pytest.mark.parametrize("batch_size, expected", [
    (None, [10]),                   # batch gradient descent: the whole set
    (1, [1] * 10),                  # stochastic gradient descent
    (4, [4, 4, 2]),                 # minibatches, the last one short
    (10, [10]),
    (64, [10]),                     # larger than the set: the whole set
])
def test_batch_size(batch_size, expected):
    assert batch_sizes(batch_size) == [expected, expected]


def fit_regression(seed=0, dtype="float64", **kwargs):
    X, y = regression()
    model = MLP([3, 4, 1], seed=seed, dtype=dtype)
    kwargs = {"loss": "mse", "optimizer": SGD(lr=0.05), **kwargs}
    model.fit(X, y, **kwargs)
    return model


def test_batch_size_none_is_the_whole_set():
    a = fit_regression(batch_size=None, epochs=3, shuffle=False)
    b = fit_regression(batch_size=32, epochs=3, shuffle=False)
    assert_weights_equal(weights(a), weights(b))


def test_no_shuffle_trains_on_batches_in_order():
    X, y = regression()
    model = fit_regression(batch_size=8, epochs=2, shuffle=False)
    by_hand = MLP([3, 4, 1], seed=0, dtype="float64")
    opt = SGD(lr=0.05)
    for _ in range(2):
        for start in range(0, 32, 8):
            by_hand.train_step(X[start:start + 8], y[start:start + 8], "mse", opt)
    assert_weights_equal(weights(model), weights(by_hand))
    shuffled = fit_regression(batch_size=8, epochs=2)
    assert not np.array_equal(shuffled.layers[0].weight, model.layers[0].weight)
    # shuffling is seeded by the model's seed: the same seed trains the same weights
    assert_weights_equal(weights(shuffled), weights(fit_regression(batch_size=8, epochs=2)))


@pytest.mark.parametrize("shuffle", [False, True])
def test_zero_sample_weight_is_leaving_the_sample_out(shuffle):
    """Full batch, mse: sum w_i l_i / sum w_i with w = [1]*16 + [0]*16 is the mean over
    the first 16. The sums run over different rows, so equal to rounding (float64)."""
    X, y = regression()
    w = np.r_[np.ones(16), np.zeros(16)]
    a = MLP([3, 4, 1], seed=0, dtype="float64")
    ha = a.fit(X, y, loss="mse", optimizer=SGD(lr=0.1), epochs=5, batch_size=None,
               shuffle=shuffle, sample_weight=w)
    b = MLP([3, 4, 1], seed=0, dtype="float64")
    hb = b.fit(X[:16], y[:16], loss="mse", optimizer=SGD(lr=0.1), epochs=5, batch_size=None,
               shuffle=shuffle)
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)
    c = fit_regression(epochs=5, batch_size=None, shuffle=shuffle)      # the weights matter
    assert not np.allclose(c.layers[0].weight, a.layers[0].weight)


def test_partial_fit_keeps_the_optimizer_state():
    """Full batch (shuffling only reorders a sum): two partial_fits == fit(epochs=2)."""
    X, y = regression()
    a = MLP([3, 4, 1], seed=0, dtype="float64")
    opt = SGD(lr=0.05, momentum=0.9)
    a.partial_fit(X, y, loss="mse", optimizer=opt, batch_size=None)
    velocity = [v.copy() for v in opt.state["velocity"]]
    assert all(v.any() for v in velocity)
    h = a.partial_fit(X, y, batch_size=None)               # loss and optimizer: the last ones
    assert a.optimizer is opt and h.epoch == [0]
    b = fit_regression(optimizer=SGD(lr=0.05, momentum=0.9), epochs=2, batch_size=None)
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    c = MLP([3, 4, 1], seed=0, dtype="float64")            # a fresh optimizer forgets
    c.partial_fit(X, y, loss="mse", optimizer=SGD(lr=0.05, momentum=0.9), batch_size=None)
    c.partial_fit(X, y, optimizer=SGD(lr=0.05, momentum=0.9), batch_size=None)
    assert not np.allclose(c.layers[0].weight, a.layers[0].weight)


def test_train_step_returns_the_loss_before_the_update():
    X, y = blobs()
    model = MLP([3, 4, 3], seed=0, dtype="float64")
    before = model.evaluate(X, y, loss="softmax_cross_entropy")["loss"]
    value = model.train_step(X, y, "softmax_cross_entropy", SGD(lr=0.5))
    assert value == pytest.approx(before, rel=1e-12)
    assert model.evaluate(X, y)["loss"] < before
    assert model.loss.name == "softmax_cross_entropy"


# ---- bad input: a clear error before any training, weights untouched ---------------------

X_GOOD, Y_GOOD = blobs(n=12)
BAD_FIT = [
    # (fit arguments, exception, message)
    (dict(X=X_GOOD[:, 0]), ValueError, r"X must be 2-D"),
    (dict(X=X_GOOD[None]), ValueError, r"X must be 2-D"),
    (dict(X=X_GOOD[:, :2]), ValueError, r"X has 2 features but the first layer takes 3"),
    (dict(X=X_GOOD.astype(str)), TypeError, r"X must hold real numbers"),
    (dict(X=np.where(np.eye(12, 3) > 0, np.nan, X_GOOD)), ValueError, r"X contains NaN or inf"),
    (dict(X=np.where(np.eye(12, 3) > 0, np.inf, X_GOOD)), ValueError, r"X contains NaN or inf"),
    (dict(y=Y_GOOD[:-1]), ValueError, r"y must have shape \(12\)"),
    (dict(y=np.r_[Y_GOOD[:-1], 3]), ValueError, r"y holds label 3, outside \[0, 3\)"),
    (dict(y=np.r_[Y_GOOD[:-1], -1]), ValueError, r"y holds label -1"),
    (dict(y=Y_GOOD.astype(float)), TypeError, r"y must hold integer class labels"),
    (dict(loss="cross_entropy"), ValueError, r"loss must be one of"),
    (dict(optimizer="adam"), TypeError, r"optimizer must be an nncore.optim optimizer"),
    (dict(optimizer=SGD), TypeError, r"optimizer must be an nncore.optim optimizer"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1"),
    (dict(batch_size=-4), ValueError, r"batch_size must be >= 1"),
    (dict(batch_size=2.5), TypeError, r"batch_size must be an int"),
    (dict(batch_size="32"), TypeError, r"batch_size must be an int"),
    (dict(epochs=0), ValueError, r"epochs must be >= 1"),
    (dict(epochs=1.5), TypeError, r"epochs must be an int"),
    (dict(verbose=3), ValueError, r"verbose must be 0, 1 or 2"),
    (dict(validation_split=1.0), ValueError, r"validation_split must lie in \[0, 1\)"),
    (dict(validation_split=-0.1), ValueError, r"validation_split must be >= 0"),
    (dict(validation_split=0.01), ValueError, r"validation_split=0.01 leaves 12 training"),
    (dict(validation_split=0.2, validation_data=(X_GOOD, Y_GOOD)), ValueError,
     r"validation_data or validation_split, not both"),
    (dict(validation_data=X_GOOD), ValueError, r"validation_data must be a pair"),
    (dict(validation_data=(X_GOOD[:, :2], Y_GOOD)), ValueError,
     r"validation_data\[0\] has 2 features"),
    (dict(validation_data=(X_GOOD, Y_GOOD + 3)), ValueError, r"y holds label"),
    (dict(sample_weight=-np.ones(12)), ValueError, r"sample_weight must be >= 0, got -1.0 at index 0"),
    (dict(sample_weight=np.r_[np.nan, np.ones(11)]), ValueError, r"sample_weight must be finite"),
    (dict(sample_weight=np.ones(11)), ValueError,
     r"sample_weight must have shape \(12\), got \(11,\)"),
    (dict(sample_weight=np.zeros(12)), ValueError, r"sample_weight must not be all zero"),
    (dict(callbacks=[lambda model, epoch, logs: None]), TypeError,
     r"callbacks must be nncore.callbacks.Callback objects"),
    (dict(callbacks=EarlyStopping()), TypeError, r"callbacks must be a list"),
    (dict(callbacks="progress"), TypeError, r"callbacks must be a list"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_FIT,
                         ids=[f"{i}-{'-'.join(case[0])}" for i, case in enumerate(BAD_FIT)])
def test_fit_bad_input(kwargs, error, message):
    model = MLP([3, 4, 3], seed=0)
    before = weights(model)
    kwargs = {"X": X_GOOD, "y": Y_GOOD, "loss": "softmax_cross_entropy", **kwargs}
    with pytest.raises(error, match=message):
        model.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    assert_weights_equal(weights(model), before)
    assert model.loss is None and model.optimizer is None and model.history is None


@pytest.mark.parametrize("bad_y", [np.r_[np.nan, np.zeros(11)], np.r_[np.inf, np.zeros(11)]])
def test_fit_bad_regression_targets(bad_y):
    model = MLP([3, 4, 1], seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        model.fit(X_GOOD, bad_y, loss="mse")
    with pytest.raises(ValueError, match=r"y must have shape \(12, 1\)"):
        model.fit(X_GOOD, np.zeros((11, 1)), loss="mse")
    assert_weights_equal(weights(model), before)


def test_train_step_and_predict_bad_input():
    model = MLP([3, 4, 3], seed=0)
    before = weights(model)
    with pytest.raises(ValueError, match="X has 2 features"):
        model.train_step(X_GOOD[:, :2], Y_GOOD, "softmax_cross_entropy", SGD())
    with pytest.raises(ValueError, match="y holds label 5"):
        model.train_step(X_GOOD, Y_GOOD + 5, "softmax_cross_entropy", SGD())
    with pytest.raises(ValueError, match="X is an empty batch"):
        model.train_step(X_GOOD[:0], Y_GOOD[:0], "softmax_cross_entropy", SGD())
    assert_weights_equal(weights(model), before)
    model.fit(X_GOOD, Y_GOOD, loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="X must be 2-D"):
        model.predict(X_GOOD[0])
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict_proba(np.full((1, 3), np.nan))


@pytest.mark.parametrize("make, error, message", [
    (lambda: MLP([3, 2], dtype="float16"), ValueError,
     r"dtype must be 'float32' or 'float64', got float16"),
    (lambda: MLP([3, 2], dtype=np.int32), ValueError, r"dtype must be 'float32' or 'float64'"),
    (lambda: MLP([3, 2], dtype="single-ish"), TypeError, r"dtype must be 'float32' or 'float64'"),
    (lambda: MLP([3, 2], activation="relux"), ValueError, r"activation must be one of"),
    (lambda: MLP([3, 4, 2], output_activation="soft_max"), ValueError,
     r"activation must be one of"),
    (lambda: MLP([3, 2], init="uniform"), ValueError, r"init must be one of"),
    (lambda: Dense(3, 2, "swish"), ValueError, r"activation must be one of"),
    (lambda: Dense(0, 2), ValueError, r"n_in must be >= 1"),
    (lambda: Dense(3, 2.0), TypeError, r"n_out must be an int"),
    (lambda: MLP([3, 2], seed=-1), ValueError, r"seed must be an int >= 0"),
    (lambda: MLP([3, 2], l2=-0.1), ValueError, r"l2 must be >= 0"),
    (lambda: MLP([3, 2], backend="cuda"), ValueError, r"backend must be one of"),
    (lambda: SGD(lr=0), ValueError, r"lr must be > 0"),
    (lambda: SGD(lr=-0.1), ValueError, r"lr must be > 0"),
    (lambda: Adam(lr=0.0), ValueError, r"lr must be > 0"),
])
def test_constructor_bad_input(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_output_in_blocks_equals_forward():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 5))
    model = MLP([5, 7, 3], seed=0, dtype="float64")
    whole = model.forward(X)
    np.testing.assert_array_equal(model.output(X, batch_size=8), whole)   # 5 blocks
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.output(X, batch_size=0)


def test_thread_counts_accept_numpy_integers():
    import nncore
    with nncore.threads(np.int64(1)):
        assert nncore.get_num_threads() == 1 and type(nncore.get_num_threads()) is int
    with pytest.raises(TypeError, match="must be an int"):
        nncore.set_num_threads(np.float64(2.0))


def test_layers_and_dtype_none_are_named():
    with pytest.raises(TypeError, match="layers must be a list of Dense layers, got NoneType"):
        Sequential(None)
    with pytest.raises(TypeError, match="layers must be a list of Dense layers, got Dense"):
        Sequential(Dense(2, 2))
    # np.dtype(None) is float64, while the default is float32: refused, not guessed
    with pytest.raises(TypeError, match="dtype must be 'float32' or 'float64', got None"):
        Sequential([Dense(2, 2)], dtype=None)
