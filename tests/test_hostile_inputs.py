"""Careless and hostile arguments: each wrong answer found by trying them is a
reproducer here. Every refusal is a ValueError or TypeError that names the
argument; nothing here may give a silently wrong result.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nncore
from nncore import MLP, _checks, cli, functional as F, optim, reference
from nncore._threads import MAX_THREADS



def classifier(dtype="float32"):
    return MLP([2, 4, 2], seed=0, dtype=dtype)


X4 = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
Y4 = np.array([0, 1, 0, 1])


# ---- complex sample weights --------------------------------------------------------------

@pytest.mark.parametrize("w", [np.array([1 + 1j] * 4), [1 + 0j] * 4,
                               np.array([1, 1, 1, 1 + 2j], dtype=object)])
def test_checks_refuse_complex_sample_weights(w):
    with pytest.raises(TypeError, match=r"^sample_weight must hold real numbers, got dtype"):
        _checks.sample_weights(w, "sample_weight", 4)


def test_fit_refuses_complex_sample_weight():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # not "discards the imaginary part"
        with pytest.raises(TypeError, match=r"^sample_weight must hold real numbers"):
            classifier().fit(X4, Y4, loss="softmax_cross_entropy",
                             sample_weight=np.array([1 + 1j] * 4))


# ---- ragged lists -------------------------------------------------------------------------

RAGGED = [[0.0, 1.0], [1.0]]


@pytest.mark.parametrize("call", [
    lambda: _checks.model_inputs(RAGGED, "X", 2, np.float32),
    lambda: F.activation_forward("relu", RAGGED),
], ids=["model_inputs", "functional"])
def test_ragged_list_is_named(call):
    with pytest.raises(ValueError, match=r"^(X|z) is ragged .*rectangular array"):
        call()


@pytest.mark.skipif(_checks._RAGGED_WARNS, reason="NumPy < 1.24 warns for a ragged list: "
                    "asarray must catch the warning there")
def test_list_inputs_leave_the_warning_filters_alone(monkeypatch):
    """warnings.catch_warnings swaps the process-wide filters: a thread predicting from a
    list must not do it beside others (NumPy >= 1.24 raises for a ragged list itself)."""
    import warnings

    def forbidden(*args, **kwargs):
        raise AssertionError("warnings.catch_warnings called")
    monkeypatch.setattr(warnings, "catch_warnings", forbidden)
    model = classifier()
    model.loss = "softmax_cross_entropy"
    assert model.predict([[0.0, 1.0], [1.0, 0.0]]).shape == (2,)
    with pytest.raises(ValueError, match=r"^X is ragged"):
        model.predict(RAGGED)


def test_ragged_targets_and_weights_are_named():
    model = classifier()
    with pytest.raises(ValueError, match=r"^y is ragged"):
        model.fit(X4, [[0], [1, 0], [0], [1]], loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"^y is ragged"):
        model.fit(X4, [[0, 1], [1], [0, 1], [1, 0]], loss="mse")
    with pytest.raises(ValueError, match=r"^sample_weight is ragged"):
        _checks.sample_weights([1.0, [1.0, 2.0], 1.0, 1.0], "sample_weight", 4)


def test_fit_names_a_ragged_X():
    with pytest.raises(ValueError, match=r"^X is ragged"):
        classifier().fit(RAGGED, [0, 1], loss="softmax_cross_entropy")


# ---- X beyond the float32 range ---------------------------------------------------------

def test_model_inputs_tell_overflow_from_nan():
    big = np.array([[1e300, 0.0]])
    with pytest.raises(ValueError, match=r"^X holds values beyond the float32 range "
                                         r"\(largest magnitude 1e\+300"):
        _checks.model_inputs(big, "X", 2, np.float32)
    np.testing.assert_array_equal(_checks.model_inputs(big, "X", 2, np.float64), big)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match=r"^X contains NaN or inf$"):
            _checks.model_inputs(np.array([[bad, 0.0]]), "X", 2, np.float32, F.all_finite)


def test_model_inputs_convert_like_the_model():
    X = np.arange(6).reshape(3, 2)                       # integers: converted
    got = _checks.model_inputs(X, "X", 2, np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, X)
    with pytest.raises(TypeError, match=r"^X must hold real numbers, got dtype complex128"):
        _checks.model_inputs(X + 1j, "X", 2, np.float32)
    with pytest.raises(ValueError, match=r"^X has 2 features but the first layer takes 3"):
        _checks.model_inputs(X, "X", 3, np.float32)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_predict_says_X_is_beyond_float32():
    model = classifier()
    model.loss = "softmax_cross_entropy"
    with pytest.raises(ValueError, match=r"^X holds values beyond the float32 range"):
        model.predict(np.array([[1e300, 0.0]]))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_inference_refuses_a_late_non_finite_value(backend):
    """forward and output check X in the first layer's product (nncore.Sequential._checked):
    a NaN or inf in the last row of the last block, or a float64 beyond float32, is
    refused as before with the same message; forward's layers keep the last good x."""
    rng = np.random.default_rng(2)
    model = MLP([30, 16, 3], seed=0, backend=backend)
    model.loss = "softmax_cross_entropy"
    good = rng.standard_normal((500, 30)).astype(np.float32)
    out = model.forward(good)
    for bad, message in ((np.nan, r"^X contains NaN or inf$"),
                         (np.inf, r"^X contains NaN or inf$"),
                         (1e300, r"^X holds values beyond the float32 range")):
        X = good.astype(np.float64)
        X[499, 29] = bad
        for call in (model.forward, lambda X: model.output(X, batch_size=64), model.predict):
            with pytest.raises(ValueError, match=message):
                call(X)
        assert model.layers[0]._x is not None and np.array_equal(model.layers[0]._x, good)
    assert np.array_equal(model.forward(good), out)


# ---- a non-finite row that a fit finds in its first epoch ---------------------------------

def _fit_state(model, opt):
    return ([p.copy() for p in model.parameters()], [g.copy() for g in model.gradients()],
            {k: [a.copy() for a in v] for k, v in opt.state.items()}, opt.t, opt.epoch,
            model.history, model.loss, model.optimizer, model._shuffle_rng.bit_generator.state)


def _same(a, b):
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a is b or a == b


@pytest.mark.parametrize("deferred", [True, False], ids=["in-the-first-epoch", "up-front"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_fit_refusing_a_late_non_finite_row_changes_nothing(monkeypatch, deferred, shuffle,
                                                           bad):
    """A large X is checked batch by batch in the first epoch (nncore.training._Undo):
    the steps before the bad row are undone, so the model, its optimizer, History and
    shuffling stream are bitwise as before the fit, as when X is checked up front."""
    from nncore import training
    monkeypatch.setattr(training, "DEFERRED_CHECK_BYTES", 0 if deferred else 1 << 62)
    undos = []

    class Undo(training._Undo):
        def restore(self):
            undos.append(self)
            super().restore()
    monkeypatch.setattr(training, "_Undo", Undo)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 40)).astype(np.float32)
    y = rng.integers(0, 3, 600)
    model = MLP([40, 8, 3], seed=0)
    opt = optim.Adam(lr=0.01)
    model.fit(X[:100], y[:100], loss="softmax_cross_entropy", optimizer=opt, epochs=2)
    before = _fit_state(model, opt)
    X[570, 3] = bad
    with pytest.raises(ValueError, match=r"^X contains NaN or inf$"):
        model.fit(X, y, optimizer=opt, epochs=3, batch_size=16, shuffle=shuffle)
    assert len(undos) == deferred                        # steps were taken, then undone
    assert _same(_fit_state(model, opt), before)
    # and with a new optimizer, whose state the fit made: gone again
    fresh = optim.SGD(lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^X contains NaN or inf$"):
        model.fit(X, y, optimizer=fresh, epochs=1)
    assert fresh.state == {"velocity": []} and fresh.t == 0
    assert _same(_fit_state(model, opt), before)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_fit_found_in_the_first_epoch_says_X_is_beyond_float32(monkeypatch):
    from nncore import training
    monkeypatch.setattr(training, "DEFERRED_CHECK_BYTES", 0)
    X = np.zeros((300, 2))
    X[250, 1] = 1e300                                    # inf in float32
    model = classifier()
    weights = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"^X holds values beyond the float32 range"):
        model.fit(X, np.zeros(300, int), loss="softmax_cross_entropy", batch_size=8)
    assert _same(model.parameters(), weights)


# ---- empty inputs -----------------------------------------------------------------------

def test_evaluate_on_empty_X_names_X():
    with pytest.raises(ValueError, match=r"^X is an empty batch"):
        classifier().evaluate(np.empty((0, 2)), np.empty(0, int), loss="softmax_cross_entropy")


@pytest.mark.parametrize("name", ["relu", "softmax", "sigmoid"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)])
def test_activations_of_empty_arrays_are_empty(name, shape):
    z = np.empty(shape)
    a = F.activation_forward(name, z)
    assert a.shape == shape
    g = F.activation_backward(name, z, a, np.empty(shape))
    assert g.shape == shape
    if shape[-1]:           # reference softmax takes z.max over the last axis: not on width 0
        assert reference.activation_forward(name, z, np.empty(shape)).shape == shape


# ---- learning-rate schedules that overflow ------------------------------------------------

@pytest.mark.parametrize("schedule, epoch, factor", [
    (optim.ExponentialDecay(gamma=1e100), 4, float("inf")),      # 1e400 overflows
    (optim.ExponentialDecay(gamma=2.0), 10 ** 6, float("inf")),
    (optim.ExponentialDecay(gamma=0.5), 10 ** 6, 0.0),          # underflow is already 0
    (optim.StepDecay(1, gamma=1e200), 2, float("inf")),
    (optim.InverseScaling(power_t=1e6), 10, 0.0),               # 11 ** 1e6 overflows
])
def test_schedules_overflow_to_inf_or_zero(schedule, epoch, factor):
    assert schedule(epoch) == factor


def test_an_exploding_schedule_stops_fit_with_training_diverged():
    model = classifier()
    opt = optim.SGD(lr=0.1, schedule=optim.ExponentialDecay(gamma=1e100))
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(nncore.TrainingDiverged):
        model.fit(X4, Y4, loss="softmax_cross_entropy", optimizer=opt, epochs=8, batch_size=4)
    for p in model.parameters():                         # the last finite weights are kept
        assert np.isfinite(p).all()
    assert any(not np.array_equal(p, q) for p, q in zip(model.parameters(), before))


# ---- thread counts too large for a C int ----------------------------------------------

def test_thread_counts_beyond_a_c_int_are_refused():
    match = rf"must be <= {MAX_THREADS} \(a C int\), got {2 ** 40}"
    with pytest.raises(ValueError, match=r"^n " + match):
        nncore.set_num_threads(2 ** 40)
    with pytest.raises(ValueError, match=r"^n " + match):
        with nncore.threads(2 ** 40):
            pass
    with pytest.raises(ValueError, match=r"^n_threads " + match):
        F.all_finite(np.ones(3), n_threads=2 ** 40)
    with nncore.threads(MAX_THREADS):                    # the largest count is accepted
        assert nncore.get_num_threads() == MAX_THREADS


# ---- the command line -------------------------------------------------------------------

def test_cli_threads_beyond_a_c_int(capsys):
    status = cli.main(["train", "--data", "moons", "--epochs", "1", "--threads", str(2 ** 40)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"nncore: error: argument --threads: expected an int from 1 to "
                          f"{MAX_THREADS}, got {2 ** 40}")


def test_cli_out_of_memory_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "nncore", "train", "--data", "moons",
                           "--layers", "2,1000000000000,2", "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("nncore: error: out of memory: Unable to allocate")
