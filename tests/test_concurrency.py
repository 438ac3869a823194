"""One model used from several threads: predictions from any number of threads are
bitwise those of serial calls; training is refused while anything else uses the model,
never silently mixed; two models train side by side unchanged. And a Dense belongs to
one place in one model."""
import threading

import numpy as np
import pytest

import nncore as nn


def model_and_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((600, 64)).astype(np.float32)
    y = rng.integers(0, 10, 600)
    m = nn.MLP([64, 256, 128, 10], seed=seed)
    m.fit(X[:64], y[:64], loss="softmax_cross_entropy", optimizer=nn.optim.SGD(lr=0.1))
    return m, X, y


def run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except Exception as e:              # collected, asserted on by the caller
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    return errors


def test_threads_predicting_at_once_match_serial_calls():
    m, X, _ = model_and_data()
    blocks = [X[i * 75:(i + 1) * 75] for i in range(8)]
    serial = [m.output(b) for b in blocks]
    got = [[None] * 8 for _ in range(20)]
    barrier = threading.Barrier(8)

    def predict(i):
        barrier.wait()
        for r in range(20):
            got[r][i] = m.output(blocks[i], batch_size=16)   # many kernel calls each

    assert run_threads(predict, 8) == []
    for r in range(20):
        for a, b in zip(got[r], serial):
            assert np.array_equal(a, b)
    # predicting wrote nothing of the model's own: a fit afterwards is unchanged
    twin, _, _ = model_and_data()
    for p, q in zip(m.parameters(), twin.parameters()):
        assert np.array_equal(p, q)


def test_predict_during_fit_is_refused_and_the_fit_is_unchanged():
    m, X, y = model_and_data()
    ref, _, _ = model_and_data()
    ref.fit(X, y, epochs=8, batch_size=8)
    started, done = threading.Event(), threading.Event()
    outcomes = []

    class Signal(nn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started.set()

    def predict(_):
        started.wait(30)
        while not done.is_set():
            try:
                m.predict(X[:50])
                outcomes.append("predicted")
            except RuntimeError as e:
                assert "training in another thread" in str(e)
                outcomes.append("refused")

    thread = threading.Thread(target=predict, args=(0,))
    thread.start()
    m.fit(X, y, epochs=8, batch_size=8, callbacks=[Signal()])
    done.set()
    thread.join(30)
    assert "refused" in outcomes
    for p, q in zip(m.parameters(), ref.parameters()):
        assert np.array_equal(p, q)


def test_second_fit_of_one_model_is_refused():
    m, X, y = model_and_data()
    ref, _, _ = model_and_data()
    ref.fit(X, y, epochs=6, batch_size=8)
    barrier = threading.Barrier(2)

    def fit(_):
        barrier.wait()
        m.fit(X, y, epochs=6, batch_size=8)

    errors = run_threads(fit, 2)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "the model is training in another call" in str(errors[0])
    for p, q in zip(m.parameters(), ref.parameters()):
        assert np.array_equal(p, q)


def test_fit_from_its_own_callback_is_refused():
    m, X, y = model_and_data()
    nested = nn.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: m.fit(X, y, epochs=1))
    with pytest.raises(RuntimeError, match="a callback of its own fit"):
        m.fit(X, y, epochs=2, callbacks=[nested])
    m.fit(X, y, epochs=1)                       # the model is usable afterwards


def test_two_models_train_side_by_side():
    models = [model_and_data(seed)[0] for seed in (1, 2)]
    refs = [model_and_data(seed)[0] for seed in (1, 2)]
    _, X, y = model_and_data()
    for r in refs:
        r.fit(X, y, epochs=5, batch_size=16)
    assert run_threads(lambda i: models[i].fit(X, y, epochs=5, batch_size=16), 2) == []
    for m, r in zip(models, refs):
        for p, q in zip(m.parameters(), r.parameters()):
            assert np.array_equal(p, q)


def test_a_layer_sits_once_in_one_model():
    layer = nn.Dense(4, 4, "tanh")
    with pytest.raises(ValueError, match=r"layers\[1\] is layers\[0\]: a Dense may appear once"):
        nn.Sequential([layer, layer])
    first = nn.Sequential([layer, nn.Dense(4, 2)], seed=0)
    weights = layer.weight.copy()
    with pytest.raises(ValueError, match=r"layers\[0\] already belongs to another model"):
        nn.Sequential([layer], seed=1)
    assert np.array_equal(first.layers[0].weight, weights)       # not redrawn
    del first                                                     # once free, reusable
    import gc
    gc.collect()
    nn.Sequential([layer], seed=1)


def test_layer_api_from_a_callback_of_fit_but_not_from_another_thread():
    m, X, y = model_and_data()
    seen, errors = [], []

    def other_thread():
        try:
            m.forward(X[:5])
        except RuntimeError as e:
            errors.append(str(e))

    def at_epoch_end(epoch, logs):
        seen.append(m.forward(X[:5]).shape)       # the training thread itself: allowed
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(30)

    m.fit(X, y, epochs=2, callbacks=[nn.callbacks.LambdaCallback(on_epoch_end=at_epoch_end)])
    assert seen == [(5, 10), (5, 10)]
    assert len(errors) == 2 and all("forward: the model is training" in e for e in errors)
