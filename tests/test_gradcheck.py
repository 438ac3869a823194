"""nncore.gradcheck: central differences check backpropagation through whole
networks, every activation x every loss, with and without l2, depths 1 to 4.

Tolerance: err(P) < 1e-6 (the norm-wise relative error defined in
nncore.gradcheck). With h = 1e-5 the central difference is off by about
h^2 |L^(3)| / 6 + eps64 |L| / h ~ 1e-11 against gradient entries ~1e-2..1;
the worst err over this grid is ~5e-8 (~3e-7 with the default h = 1e-6,
in deep sigmoid and softmax stacks, whose gradients are small). A real bug
is >= 1e-3 (test_detects_*).

Kinks are avoided by construction and checked: `problem` takes the first
seed whose every relu/leaky_relu/step pre-activation and every hinge margin
is farther from 0 than twice `reach`, a bound on how far one step of h in
one parameter can move any pre-activation or output: h max(1, |a_prev|) in
the parameter's own layer, times ||W||_inf * Lipschitz(f) <= ||W||_inf for
each layer after it (every activation here is 1-Lipschitz in the infinity
norm; the factor 2 covers margins, differences of two outputs). So no unit
switches and no margin changes sign between L(theta + h e_i) and
L(theta - h e_i). With h = 1e-5 the reach is ~1e-4 and rejects few seeds.
"""
import numpy as np
import pytest

import nncore
from nncore import MLP, Dense, Sequential, functional as F
from nncore import gradcheck

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "step",
               "softmax")
LOSSES = F.LOSSES
KINKED = ("relu", "leaky_relu", "step")
H = 1e-5
TOL = 1e-6
N, N_IN, WIDTH, N_OUT = 5, 3, 4, 3


def make_targets(rng, loss, n, k):
    if loss in ("softmax_cross_entropy", "hinge"):
        return rng.integers(0, k, n)
    if loss == "mse":
        return rng.standard_normal((n, k))
    return rng.random((n, k))                       # probabilities for binary CE


def kink_distance(model, X, y, loss):
    """min |z| over relu/leaky_relu/step units and |margin| over hinge terms (inf if none),
    in float64 at the model's weights."""
    dist = np.inf
    a = np.asarray(X, np.float64)
    for layer in model.layers:
        bias = None if layer.bias is None else layer.bias.astype(np.float64)
        z, a = F.dense_forward(a, layer.weight.astype(np.float64), bias, layer.activation,
                               slope=layer.slope)
        if layer.activation in KINKED:
            dist = min(dist, float(np.abs(z).min()))
    if loss == "hinge":
        rows = np.arange(len(y))
        margin = a - a[rows, y][:, None] + 1.0
        margin[rows, y] = np.inf                    # j = y is not a term
        dist = min(dist, float(np.abs(margin).min()))
    return dist


def reach(model, X, h):
    """max over parameters of the largest change in any pre-activation or output
    that moving that one parameter by h can cause (a Lipschitz bound)."""
    a = np.asarray(X, np.float64)
    moved = []                                   # max change of layer l's z, from its own step
    for layer in model.layers:
        moved.append(h * max(1.0, float(np.abs(a).max())))
        a = F.dense_forward(a, layer.weight.astype(np.float64),
                            None if layer.bias is None else layer.bias.astype(np.float64),
                            layer.activation, slope=layer.slope)[1]
    norms = [float(np.abs(layer.weight).sum(axis=1).max()) * max(1.0, layer.slope)
             for layer in model.layers]
    worst = 0.0
    for start, change in enumerate(moved):
        worst = max(worst, change)
        for norm in norms[start + 1:]:
            change *= norm
            worst = max(worst, change)
    return worst


def output_activation(activation, loss):
    """mse reads any output (step aside: a flat output); the others take logits."""
    return activation if loss == "mse" and activation != "step" else "identity"


def problem(activation, loss, depth, l2, *, dtype="float64", backend="compiled", n=N):
    """(model, X, y) from the first seed that keeps every kink out of reach.
    Biases are set to 0.5 N(0, 1) so that their gradients are not special."""
    sizes = [N_IN] + [WIDTH] * (depth - 1) + [N_OUT]
    for seed in range(100):
        rng = np.random.default_rng(seed)
        model = MLP(sizes, activation, output_activation(activation, loss), seed=seed,
                    dtype=dtype, l2=l2, backend=backend)
        for layer in model.layers:
            layer.bias[...] = 0.5 * rng.standard_normal(layer.n_out)
        X = rng.standard_normal((n, N_IN))
        y = make_targets(rng, loss, n, N_OUT)
        if kink_distance(model, X, y, loss) > 2 * reach(model, X, H):
            return model, X, y
    raise AssertionError("no seed in 0..99 keeps the kinks away")


def cases():
    """depth 1 has no hidden layer: the activation shows only as mse's output
    (step aside); the other losses take identity logits, checked once."""
    for depth in (1, 2, 3, 4):
        for activation in ACTIVATIONS:
            for loss in LOSSES:
                if depth == 1 and (activation == "step" or
                                   (loss != "mse" and activation != "identity")):
                    continue
                yield activation, loss, depth


@pytest.mark.parametrize("l2", [0.0, 0.1], ids=["no_l2", "l2"])
@pytest.mark.parametrize("activation,loss,depth", list(cases()))
def test_every_activation_and_loss(activation, loss, depth, l2):
    model, X, y = problem(activation, loss, depth, l2)
    errors = gradcheck(model, X, y, loss, eps=H)
    assert len(errors) == 2 * depth
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_float32_model(activation, loss):
    """A float32 model is checked through its float64 copy and left bitwise untouched."""
    model, X, y = problem(activation, loss, 3, 0.01, dtype="float32")
    before = [p.copy() for p in model.parameters()]
    errors = gradcheck(model, X, y, loss, eps=H)
    assert max(errors.values()) < TOL, errors
    for p, q in zip(model.parameters(), before):
        assert p.dtype == np.float32 and np.array_equal(p, q)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_numpy_backend(activation, loss):
    model, X, y = problem(activation, loss, 2, 0.1, backend="numpy")
    assert max(gradcheck(model, X, y, loss, eps=H).values()) < TOL


@pytest.mark.parametrize("loss", LOSSES)
def test_sample_weight(loss):
    model, X, y = problem("tanh", loss, 3, 0.1, n=7)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 0.25, 1.0])
    assert max(gradcheck(model, X, y, loss, eps=H, sample_weight=w).values()) < TOL


def test_default_eps():
    model, X, y = problem("tanh", "softmax_cross_entropy", 3, 0.1)
    assert max(gradcheck(model, X, y, "softmax_cross_entropy").values()) < TOL


@pytest.mark.parametrize("loss", LOSSES)
def test_step_gradient_is_zero_on_both_sides(loss):
    """step' = 0: backward gives exactly 0 for every parameter below the last step
    layer, and the central difference agrees exactly (no unit flips within +-h, so
    L(theta + h e_i) and L(theta - h e_i) are the same float): err = 0 / tiny = 0.
    The linear output layer still learns."""
    model, X, y = problem("step", loss, 3, 0.0)
    errors = gradcheck(model, X, y, loss, eps=H)
    for name in ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"):
        assert errors[name] == 0.0
    assert errors["layers.2.weight"] < TOL and errors["layers.2.bias"] < TOL
    loss_fn = nncore.losses.get(loss)
    targets = loss_fn.targets(y, N, N_OUT, model.dtype)
    _, grad = loss_fn(model.forward(X), targets)
    model.backward(grad)
    for layer in model.layers[:2]:
        assert not layer.grad_weight.any() and not layer.grad_bias.any()
    assert model.layers[2].grad_weight.any()


def test_names_and_order():
    model = Sequential([Dense(3, 4, "tanh"), Dense(4, 2, bias=False)], seed=0,
                       dtype="float64")
    X = np.random.default_rng(0).standard_normal((4, 3))
    errors = gradcheck(model, X, np.zeros((4, 2)), "mse", eps=H)
    assert list(errors) == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
    assert max(errors.values()) < TOL
    assert nncore.gradcheck is gradcheck and "gradcheck" in nncore.__all__


def test_float32_copy_keeps_slope_and_missing_bias():
    """The float64 copy is rebuilt from each layer's config(): a non-default
    leaky_relu slope and a layer without bias must survive the trip."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        model = Sequential([Dense(3, 4, "leaky_relu", slope=0.3), Dense(4, 2, bias=False)],
                           seed=seed, dtype="float32", l2=0.1)
        model.layers[0].bias[...] = rng.standard_normal(4)
        X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
        if kink_distance(model, X, y, "hinge") > 2 * reach(model, X, H):
            break
    errors = gradcheck(model, X, y, "hinge", eps=H)
    assert list(errors) == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
    assert max(errors.values()) < TOL
    # the same network built by hand in float64 gives exactly the same errors
    by_hand = Sequential([Dense(3, 4, "leaky_relu", slope=0.3), Dense(4, 2, bias=False)],
                         dtype="float64", l2=0.1)
    for p, q in zip(by_hand.parameters(), model.parameters()):
        p[...] = q
    assert gradcheck(by_hand, X, y, "hinge", eps=H) == errors


def test_float64_weights_and_gradients_restored_bitwise():
    model, X, y = problem("relu", "hinge", 3, 0.1)
    model.zero_grad()
    model.layers[0].grad_weight[...] = 7.0          # gradient buffers are restored too
    arrays = model.parameters() + model.gradients()
    before = [a.copy() for a in arrays]
    gradcheck(model, X, y, "hinge", eps=H)
    for a, b, now in zip(arrays, before, model.parameters() + model.gradients()):
        assert now is a and np.array_equal(a, b)


def test_restored_after_an_error(monkeypatch):
    model, X, y = problem("tanh", "mse", 2, 0.1)
    before = [p.copy() for p in model.parameters()]
    calls = []
    forward = Sequential._forward

    def failing_forward(self, x, *args):
        calls.append(1)
        if len(calls) == 6:                          # in the middle of the differences
            raise RuntimeError("boom")
        return forward(self, x, *args)

    monkeypatch.setattr(Sequential, "_forward", failing_forward)
    with pytest.raises(RuntimeError, match="boom"):
        gradcheck(model, X, y, "mse", eps=H)
    for p, q in zip(model.parameters(), before):
        assert np.array_equal(p, q)


# ---- a wrong gradient is caught ---------------------------------------------

def test_detects_scaled_grad_weight():
    """One layer's grad_weight 1% too large: err = 0.01 / 2.01 ~ 5e-3 there, the
    other layers (whose gradients do not depend on it) stay clean."""
    model, X, y = problem("tanh", "softmax_cross_entropy", 3, 0.0)
    layer = model.layers[1]
    backward = layer.backward

    def wrong_backward(grad_a, **kw):
        gx = backward(grad_a, **kw)
        layer.grad_weight *= 1.01
        return gx

    layer.backward = wrong_backward
    errors = gradcheck(model, X, y, "softmax_cross_entropy", eps=H)
    assert errors["layers.1.weight"] > 1e-3
    others = {k: v for k, v in errors.items() if k != "layers.1.weight"}
    assert max(others.values()) < TOL


def test_detects_wrong_bias_sign_in_a_float32_model(monkeypatch):
    """The float64 copy of a float32 model runs the same Dense code: a sign error
    in every grad_bias (patched on the class) gives err = 1."""
    model, X, y = problem("sigmoid", "binary_cross_entropy", 2, 0.0, dtype="float32")
    backward = Dense.backward

    def wrong_backward(self, grad_a, **kw):
        gx = backward(self, grad_a, **kw)
        np.negative(self.grad_bias, out=self.grad_bias)
        return gx

    monkeypatch.setattr(Dense, "backward", wrong_backward)
    errors = gradcheck(model, X, y, "binary_cross_entropy", eps=H)
    assert errors["layers.0.bias"] == pytest.approx(1.0)
    assert errors["layers.1.bias"] == pytest.approx(1.0)
    assert errors["layers.0.weight"] < TOL


def test_detects_a_missing_l2_gradient(monkeypatch):
    """l2_penalty that forgets to add l2 W to the gradient: the finite differences
    still see the penalty, so every weight's error is large (biases have none)."""
    l2_penalty = F.l2_penalty
    monkeypatch.setattr(F, "l2_penalty",
                        lambda w, lam, grad_weight=None, **kw: l2_penalty(w, lam, None, **kw))
    model, X, y = problem("tanh", "mse", 2, 0.5)
    errors = gradcheck(model, X, y, "mse", eps=H)
    assert errors["layers.0.weight"] > 1e-2 and errors["layers.1.weight"] > 1e-2
    assert errors["layers.0.bias"] < TOL and errors["layers.1.bias"] < TOL


def test_bad_arguments():
    model, X, y = problem("tanh", "mse", 2, 0.0)
    with pytest.raises(ValueError, match="eps must be"):
        gradcheck(model, X, y, "mse", eps=0.0)
    with pytest.raises(TypeError, match="Sequential"):
        gradcheck(object(), X, y, "mse")
    with pytest.raises(ValueError, match="logits"):
        gradcheck(MLP([3, 2], "tanh", "sigmoid", dtype="float64"), X, [0, 1, 0, 1, 0],
                  "hinge")
    with pytest.raises(ValueError, match="features"):
        gradcheck(model, X[:, :2], y, "mse")
