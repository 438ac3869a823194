"""The optimizer classes and learning-rate schedules as models use them: schedule
factors by epoch, the step size fit takes, L2 and weight decay, state and config.
(The update kernels themselves are checked in test_optim.py.)"""
import numpy as np
import pytest

from nncore import MLP, Dense, Sequential
from nncore.callbacks import LambdaCallback
from nncore.optim import (SGD, Adam, ExponentialDecay, InverseScaling, StepDecay,
                          from_config)


# ---- schedules: lr(epoch) = lr * factor(epoch) -------------------------------------------

@pytest.mark.parametrize("schedule, factors", [
    (StepDecay(3, 0.1), [1, 1, 1, 0.1, 0.1, 0.1, 0.01]),           # 0.1 ** (epoch // 3)
    (StepDecay(1, 0.5), [1, 0.5, 0.25, 0.125]),
    (ExponentialDecay(0.5), [1, 0.5, 0.25, 0.125, 0.0625]),        # 0.5 ** epoch
    (InverseScaling(), [1, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5]),  # 1 / sqrt(epoch + 1)
    (InverseScaling(1.0), [1, 1 / 2, 1 / 3, 1 / 4]),
    (InverseScaling(0.0), [1, 1, 1]),
])
def test_schedule_factors(schedule, factors):
    got = [schedule(epoch) for epoch in range(len(factors))]
    np.testing.assert_allclose(got, factors, rtol=1e-15)


def test_current_lr():
    opt = SGD(lr=0.2, schedule=StepDecay(2, 0.5))
    assert opt.epoch == 0 and opt.current_lr() == 0.2
    opt.epoch = 2
    assert opt.current_lr() == 0.1
    opt.epoch = 5
    assert opt.current_lr() == pytest.approx(0.2 * 0.25, rel=1e-15)
    assert SGD(lr=0.3).current_lr() == 0.3
    custom = Adam(lr=0.1, schedule=lambda epoch: 1 / (1 + epoch))    # any callable
    custom.epoch = 3
    assert custom.current_lr() == pytest.approx(0.025, rel=1e-15)


def one_weight_model(weight, bias=None, l2=0.0):
    """Dense(1, 1), identity, float64; with bias=None, no bias."""
    model = Sequential([Dense(1, 1, bias=bias is not None)], dtype="float64", l2=l2)
    model.layers[0].weight[...] = weight
    if bias is not None:
        model.layers[0].bias[...] = bias
    return model


@pytest.mark.parametrize("schedule", [StepDecay(2, 0.5), ExponentialDecay(0.5),
                                      InverseScaling(1.0), None])
def test_fit_steps_by_the_scheduled_lr(schedule):
    """x = 1, t = 0, mse: L = 1/2 w^2, dL/dw = w, so one SGD step is
    w <- w (1 - lr_t) with lr_t = lr * factor(epoch). Two identical samples and
    batch_size 1: two steps per epoch, both at that epoch's lr."""
    lr = 0.5
    factor = schedule or (lambda epoch: 1.0)
    model = one_weight_model(1.0)
    opt = SGD(lr=lr, schedule=schedule)
    w = [1.0]
    record = LambdaCallback(on_batch_end=lambda b, logs: w.append(model.layers[0].weight[0, 0]))
    X, y = np.ones((2, 1)), np.zeros((2, 1))
    model.fit(X, y, loss="mse", optimizer=opt, epochs=4, batch_size=1, callbacks=[record])
    assert opt.epoch == 4
    ratios = np.array(w[1:]) / np.array(w[:-1])
    expected = np.repeat([1 - lr * factor(epoch) for epoch in range(4)], 2)
    np.testing.assert_allclose(ratios, expected, rtol=1e-14)
    # fit again (or partial_fit): the schedule goes on from epoch 4
    model.partial_fit(X, y, batch_size=1)
    assert opt.epoch == 5
    np.testing.assert_allclose(model.layers[0].weight[0, 0],
                               w[-1] * (1 - lr * factor(4)) ** 2, rtol=1e-14)
    # a train_step uses the current lr and leaves the epoch alone
    before = model.layers[0].weight[0, 0]
    model.train_step(X[:1], y[:1])
    assert opt.epoch == 5
    np.testing.assert_allclose(model.layers[0].weight[0, 0], before * (1 - lr * factor(5)),
                               rtol=1e-14)


def test_adam_first_step_is_the_scheduled_lr():
    """x = 2, t = 0: L = 1/2 (2w)^2, g = 4w = 4 at w = 1. Adam's first step is
    lr_t * m_hat / (sqrt(v_hat) + eps) = lr_t * 4 / (4 + eps): about lr_t whatever g."""
    model = one_weight_model(1.0)
    opt = Adam(lr=0.1, schedule=ExponentialDecay(0.5))
    opt.epoch = 2                                               # lr_t = 0.1 * 0.25
    model.train_step([[2.0]], [[0.0]], "mse", opt)
    assert opt.t == 1
    np.testing.assert_allclose(model.layers[0].weight[0, 0], 1 - 0.025 * 4 / (4 + 1e-8),
                               rtol=1e-14)


# ---- L2 and weight decay ------------------------------------------------------------

# One Dense(1, 1), w = 2, b = 0.5, x = 1: output 2.5.
#   Target 0:   r = 2.5, data gradients dw = r x = 2.5, db = r = 2.5
#   Target 2.5: r = 0,   data gradients 0: only the decay moves anything.
# Model l2 = 0.1 adds 1/2 l2 w^2 = 0.2 to the loss and l2 w = 0.2 to dw, never to db;
# SGD weight_decay = 0.1 adds weight_decay w = 0.2 to dw in the update only.
# SGD lr = 0.5:
#   target 0:   w' = 2 - 0.5 (2.5 + 0.2) = 0.65,   b' = 0.5 - 0.5 * 2.5 = -0.75
#   target 2.5: w' = 2 - 0.5 * 0.2 = 1.9,           b' = 0.5
@pytest.mark.parametrize("target, loss, w_new, b_new", [
    (0.0, 3.125, 0.65, -0.75),           # loss 1/2 2.5^2 = 3.125 (+ 0.2 with l2)
    (2.5, 0.0, 1.9, 0.5),
])
@pytest.mark.parametrize("how", ["l2", "weight_decay"])
def test_decay_hand_worked(how, target, loss, w_new, b_new):
    if how == "l2":
        model = one_weight_model(2.0, bias=0.5, l2=0.1)
        opt, loss = SGD(lr=0.5), loss + 0.2
    else:
        model = one_weight_model(2.0, bias=0.5)
        opt = SGD(lr=0.5, weight_decay=0.1)
    value = model.train_step([[1.0]], [[target]], "mse", opt)
    assert value == pytest.approx(loss, rel=1e-15)
    assert model.layers[0].weight[0, 0] == pytest.approx(w_new, rel=1e-15)
    assert model.layers[0].bias[0] == pytest.approx(b_new, rel=1e-15)


def test_adam_weight_decay_skips_biases():
    """Zero data gradient: the weight's gradient is weight_decay w = 2, so Adam's first
    step moves it by lr * 2 / (2 + eps); the bias's gradient is 0 and it stays put."""
    model = one_weight_model(2.0, bias=0.5)
    model.train_step([[1.0]], [[2.5]], "mse", Adam(lr=0.1, weight_decay=1.0))
    np.testing.assert_allclose(model.layers[0].weight[0, 0], 2 - 0.1 * 2 / (2 + 1e-8),
                               rtol=1e-14)
    assert model.layers[0].bias[0] == 0.5


def test_l2_penalty_sums_over_every_layer():
    X = np.random.default_rng(0).standard_normal((5, 2))
    y = np.zeros((5, 1))
    plain = MLP([2, 3, 1], seed=0, dtype="float64")
    decayed = MLP([2, 3, 1], seed=0, dtype="float64", l2=0.1)
    penalty = 0.5 * 0.1 * sum(np.sum(layer.weight ** 2) for layer in plain.layers)
    assert (decayed.evaluate(X, y, loss="mse")["loss"]
            == pytest.approx(plain.evaluate(X, y, loss="mse")["loss"] + penalty, rel=1e-14))


# ---- state and config ---------------------------------------------------------------

def test_optimizer_state_follows_the_parameters():
    model = MLP([3, 4, 2], seed=0)
    X, y = np.ones((4, 3)), np.array([0, 1, 0, 1])
    sgd = SGD(lr=0.1, momentum=0.9)
    model.train_step(X, y, "softmax_cross_entropy", sgd)
    assert [v.shape for v in sgd.state["velocity"]] == [p.shape for p in model.parameters()]
    assert SGD(lr=0.1).state == {}                            # no momentum, no state
    adam = Adam()
    for _ in range(3):
        model.train_step(X, y, "softmax_cross_entropy", adam)
    assert adam.t == 3 and adam.epoch == 0
    assert [m.dtype for m in adam.state["m"]] == [np.float32] * 4
    other = MLP([3, 2], seed=0, dtype="float64")              # reused elsewhere: fresh state
    other.train_step(X, y, "softmax_cross_entropy", adam)
    assert [v.shape for v in adam.state["v"]] == [(2, 3), (2,)]


@pytest.mark.parametrize("opt", [
    SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, schedule=StepDecay(3, 0.5)),
    SGD(lr=0.1, schedule=InverseScaling(0.25)),
    Adam(lr=0.002, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1,
         schedule=ExponentialDecay(0.9)),
])
def test_config_round_trip(opt):
    opt.epoch = 4
    if isinstance(opt, Adam):
        opt.t = 17
    again = from_config(opt.config())
    assert type(again) is type(opt) and again.config() == opt.config()
    assert again.current_lr() == opt.current_lr()


def test_config_needs_a_named_schedule():
    with pytest.raises(ValueError, match="a schedule without config"):
        SGD(schedule=lambda epoch: 1.0).config()


@pytest.mark.parametrize("make, error, message", [
    (lambda: StepDecay(0), ValueError, r"step_size must be an int >= 1"),
    (lambda: StepDecay(1.5), ValueError, r"step_size must be an int >= 1"),
    (lambda: StepDecay(2, gamma=0), ValueError, r"gamma must be > 0"),
    (lambda: ExponentialDecay(-0.5), ValueError, r"gamma must be > 0"),
    (lambda: InverseScaling(-1), ValueError, r"power_t must be >= 0"),
    (lambda: SGD(lr=0), ValueError, r"lr must be > 0"),
    (lambda: SGD(lr=float("nan")), ValueError, r"lr must be finite"),
    (lambda: SGD(lr="0.1"), TypeError, r"lr must be a real number"),
    (lambda: SGD(momentum=-0.9), ValueError, r"momentum must be >= 0"),
    (lambda: SGD(nesterov=True), ValueError, r"nesterov=True needs momentum > 0"),
    (lambda: SGD(weight_decay=-1e-4), ValueError, r"weight_decay must be >= 0"),
    (lambda: SGD(schedule=0.5), TypeError, r"schedule must be callable"),
    (lambda: Adam(lr=-1e-3), ValueError, r"lr must be > 0"),
    (lambda: Adam(betas=0.9), ValueError, r"betas must be a pair"),
    (lambda: Adam(betas=(0.9, 1.0)), ValueError, r"betas must lie in \[0, 1\)"),
    (lambda: Adam(eps=0), ValueError, r"eps must be > 0"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
