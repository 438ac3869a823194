"""nncore.plot and the examples/ scripts, drawn headless (Agg) into tmp_path.

matplotlib is the optional `plot` extra: without it this whole file is skipped.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import nncore as nn  # noqa: E402
from nncore import plot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def assert_png(path):
    """path is a PNG matplotlib can read back, of nonzero size."""
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    assert path.stat().st_size > 0
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_SIGNATURE, f"{path} is not a PNG"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 10 and image.shape[1] > 10
    assert image[..., :3].std() > 0, f"{path} is blank"


def save(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    assert_png(path)
    return path


def fitted(layers, X, y, loss, epochs=20, dtype="float32", seed=0, **fit):
    model = nn.Sequential(layers, seed=seed, dtype=dtype)
    model.fit(X, y, loss=loss, optimizer=nn.optim.Adam(lr=0.02), epochs=epochs, **fit)
    return model


# ---- matplotlib stays optional ---------------------------------------------------------

def test_import_nncore_does_not_import_matplotlib():
    code = "import sys, nncore, nncore.plot; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("call", [
    lambda: plot.history({"loss": [1.0, 0.5]}),
    lambda: plot.weight_images(np.zeros((2, 4))),
])
def test_without_matplotlib_the_error_says_what_to_install(monkeypatch, call):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)     # `import` now fails
    with pytest.raises(ImportError, match=re.escape('pip install "nncore-mlp[plot]"')):
        call()


# ---- history --------------------------------------------------------------------------

def test_history_train_and_validation(tmp_path):
    X, y = nn.datasets.spiral(n_per_class=30)
    model = nn.MLP([2, 16, 3], seed=0)
    h = model.fit(X, y, loss="softmax_cross_entropy", optimizer=nn.optim.Adam(lr=0.01),
                  epochs=5, validation_split=0.2)
    fig, axes = plot.history(h)
    assert [ax.get_ylabel() for ax in axes] == ["loss", "accuracy"]
    for ax, metric in zip(axes, ("loss", "accuracy")):
        train, val = ax.get_lines()
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_array_equal(train.get_ydata(), h[metric])
        np.testing.assert_array_equal(val.get_ydata(), h[f"val_{metric}"])
    save(fig, tmp_path, "history.png")


def test_history_skips_missing_metrics_and_overlays_runs(tmp_path):
    X, y = nn.datasets.curve()
    runs = [fitted([nn.Dense(1, 3, "tanh"), nn.Dense(3, 1)], X, y, "mse", batch_size=b)
            for b in (None, 1)]
    fig, axes = plot.history(runs[0].history, label="batch")      # mse: no accuracy
    assert len(axes) == 1
    plot.history(runs[1].history, axes=axes, label="stochastic")
    assert [line.get_label() for line in axes[0].get_lines()] == ["batch train",
                                                                  "stochastic train"]
    save(fig, tmp_path, "overlay.png")
    fig, axes = plot.history({"loss": [3.0, 2.0, 1.0]}, metrics="loss")
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_xdata(), [1, 2, 3])


def test_history_errors():
    with pytest.raises(ValueError, match="holds none of"):
        plot.history({"loss": [1.0]}, metrics=("accuracy",))
    with pytest.raises(TypeError, match="History"):
        plot.history([1.0, 2.0])
    with pytest.raises(ValueError, match="axes holds 1"):
        plot.history({"loss": [1.0], "accuracy": [0.5]}, axes=[plt.subplots()[1]])


# ---- decision_boundary -------------------------------------------------------------------

def test_decision_boundary_regions_are_the_predictions(tmp_path):
    X, y = nn.datasets.spiral(n_per_class=40)
    model = fitted([nn.Dense(2, 32, "relu"), nn.Dense(32, 3)], X, y,
                   "softmax_cross_entropy", epochs=30)
    fig, ax = plot.decision_boundary(model, X, y, resolution=50, padding=0.0)
    mesh = ax.collections[0]
    regions = np.asarray(mesh.get_array()).reshape(50, 50)
    g0, g1 = np.meshgrid(np.linspace(X[:, 0].min(), X[:, 0].max(), 50),
                         np.linspace(X[:, 1].min(), X[:, 1].max(), 50))
    expected = model.predict(np.column_stack([g0.ravel(), g1.ravel()])).reshape(50, 50)
    np.testing.assert_array_equal(regions, expected)
    save(fig, tmp_path, "spiral.png")


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "mse"])
def test_decision_boundary_single_output(tmp_path, loss):
    X, y = nn.datasets.xor()
    model = fitted([nn.Dense(2, 4, "tanh"), nn.Dense(4, 1)], X, y.reshape(-1, 1), loss,
                   epochs=5, batch_size=None)
    fig, ax = plot.decision_boundary(model, X, y, resolution=20)
    assert set(np.unique(ax.collections[0].get_array())) <= {0, 1}
    save(fig, tmp_path, f"xor_{loss}.png")


def test_decision_boundary_errors():
    X, y = nn.datasets.xor()
    model = fitted([nn.Dense(2, 2)], X, y, "softmax_cross_entropy", epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.decision_boundary(model, np.zeros((4, 3)), y)
    with pytest.raises(ValueError, match="3 labels for 4 points"):
        plot.decision_boundary(model, X, y[:3])
    with pytest.raises(ValueError, match="resolution"):
        plot.decision_boundary(model, X, y, resolution=1)
    multilabel = fitted([nn.Dense(2, 2)], X, np.eye(2)[y], "binary_cross_entropy", epochs=1)
    with pytest.raises(ValueError, match="one label per point"):
        plot.decision_boundary(multilabel, X, y)


# ---- weight_images --------------------------------------------------------------------------

def test_weight_images_of_a_first_layer(tmp_path):
    model = nn.MLP([64, 16, 16, 10], activation="sigmoid", seed=0)
    fig, axes = plot.weight_images(model.layers[0], shape=(8, 8), n=16)
    assert axes.shape == (4, 4)
    for i, ax in enumerate(axes.flat):
        image = ax.get_images()[0]
        np.testing.assert_array_equal(image.get_array(), model.layers[0].weight[i].reshape(8, 8))
        assert image.get_clim() == pytest.approx((-np.abs(model.layers[0].weight[i]).max(),
                                                  np.abs(model.layers[0].weight[i]).max()))
    save(fig, tmp_path, "weights8.png")
    fig, axes = plot.weight_images(model, n=100)            # the model's first layer, all 16
    assert sum(bool(ax.get_images()) for ax in axes.flat) == 16


def test_weight_images_of_an_array(tmp_path):
    w = np.random.default_rng(0).standard_normal((10, 784))
    fig, axes = plot.weight_images(w, n=5)                   # (28, 28) inferred
    assert axes.shape == (2, 3)
    assert [bool(ax.get_images()) for ax in axes.flat] == [True] * 5 + [False]
    assert axes[0, 0].get_images()[0].get_array().shape == (28, 28)
    save(fig, tmp_path, "weights28.png")
    with pytest.raises(ValueError, match="not a square"):
        plot.weight_images(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="does not hold"):
        plot.weight_images(np.zeros((3, 10)), shape=(3, 3))


# ---- curve_decomposition ----------------------------------------------------------------------

CURVE_CASES = [(f, g, dtype) for f in ("softplus", "relu", "tanh", "sigmoid", "leaky_relu",
                                       "identity", "softmax")
               for g, dtype in (("identity", "float32"), ("identity", "float64"))]
CURVE_CASES += [("softplus", "sigmoid", "float64"), ("relu", "tanh", "float32")]


@pytest.mark.parametrize("f, g, dtype", CURVE_CASES)
def test_curve_decomposition_sums_to_the_network_output(tmp_path, f, g, dtype):
    X, y = nn.datasets.curve()
    model = fitted([nn.Dense(1, 3, f), nn.Dense(3, 1, g)], X, y, "mse", epochs=50,
                   dtype=dtype, batch_size=None)
    fig, axes = plot.curve_decomposition(model, x_range=(-0.5, 1.5), X=X, y=y, n_points=101)
    lines = {line.get_gid(): line for ax in axes for line in ax.get_lines()}
    x = lines["output"].get_xdata()
    np.testing.assert_allclose(x, np.linspace(-0.5, 1.5, 101))
    scaled = np.stack([lines[f"scaled-{i}"].get_ydata() for i in range(3)], axis=1)
    hidden = np.stack([lines[f"hidden-{i}"].get_ydata() for i in range(3)], axis=1)
    v = model.layers[1].weight[0].astype(np.float64)
    c = float(model.layers[1].bias[0])
    np.testing.assert_allclose(scaled, hidden * v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lines["sum"].get_ydata(), scaled.sum(axis=1),
                               rtol=1e-12, atol=1e-12)
    # the last curve is the network: sum + c (through g), equal to predict
    predicted = model.predict(x[:, None])[:, 0]
    scale = 1 + np.abs(scaled).sum(axis=1) + abs(c)
    eps = np.finfo(dtype).eps                 # a few roundings of terms up to `scale`
    assert np.all(np.abs(lines["output"].get_ydata() - predicted) <= 16 * eps * scale)
    if g == "identity":
        assert "z" not in lines
        np.testing.assert_allclose(lines["output"].get_ydata(),
                                   lines["sum"].get_ydata() + c, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(lines["z"].get_ydata(), lines["sum"].get_ydata() + c,
                                   rtol=1e-12, atol=1e-12)
    if f == "softplus":                       # rendering is the slow part: a few suffice
        save(fig, tmp_path, f"curve_{f}_{g}.png")


def test_curve_components_without_matplotlib_calls():
    X, y = nn.datasets.curve()
    model = fitted([nn.Dense(1, 2, "softplus"), nn.Dense(2, 1)], X, y, "mse", epochs=10,
                   dtype="float64", batch_size=None)
    parts = plot.curve_components(model, X)
    hidden, out = model.layers
    a = np.logaddexp(0, X * hidden.weight[:, 0] + hidden.bias)      # softplus, by hand
    np.testing.assert_allclose(parts["hidden"], a, rtol=1e-14)
    np.testing.assert_allclose(parts["output"], a @ out.weight[0] + out.bias[0], rtol=1e-13)
    np.testing.assert_allclose(parts["output"], model.predict(X)[:, 0], rtol=1e-13, atol=1e-15)


def test_curve_decomposition_default_range_and_many_units(tmp_path):
    X = np.linspace(2.0, 4.0, 9)[:, None]
    y = np.sin(X)
    model = fitted([nn.Dense(1, 12, "tanh"), nn.Dense(12, 1)], X, y, "mse", epochs=5)
    fig, axes = plot.curve_decomposition(model, X=X, y=y)
    x = axes[1].get_lines()[0].get_xdata()
    assert (x[0], x[-1]) == pytest.approx((1.8, 4.2))
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["12 units: tanh(w_i x + b_i)"]                 # one entry for 12 units
    save(fig, tmp_path, "curve_many.png")
    fig, axes = plot.curve_decomposition(model)                       # no data: (-1, 1)
    x = axes[1].get_lines()[0].get_xdata()
    assert (x[0], x[-1]) == (-1.0, 1.0)


@pytest.mark.parametrize("sizes", [[2, 3, 1], [1, 3, 2], [1, 3, 3, 1], [1, 1]])
def test_curve_decomposition_rejects_other_networks(sizes):
    model = nn.MLP(sizes, activation="tanh")
    with pytest.raises(ValueError, match="1 input, one hidden layer and 1 output"):
        plot.curve_decomposition(model)
    with pytest.raises(ValueError, match="-".join(map(str, sizes))):
        plot.curve_components(model, [0.0])


def test_curve_decomposition_other_errors():
    with pytest.raises(TypeError, match="Sequential"):
        plot.curve_decomposition(nn.Dense(1, 1))
    model = nn.MLP([1, 2, 1])
    with pytest.raises(ValueError, match="lo < hi"):
        plot.curve_decomposition(model, x_range=(1, 1))
    with pytest.raises(ValueError, match="pass y with X"):
        plot.curve_decomposition(model, X=np.zeros((2, 1)))


# ---- the example scripts ------------------------------------------------------------------

def number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def curve_fit_claims(out):
    """Near-zero loss through the three points; the decomposition is the network."""
    assert number(r"final (\S+)", out) < 1e-10
    assert "-> [0.0, 1.0, 0.0]" in out
    assert number(r"max \|.*\| = (\S+)", out) < 1e-12


def spiral_claims(out):
    assert 40 <= number(r"linear softmax 2-3 .* accuracy (\S+) %", out) <= 65
    assert number(r"ReLU network 2-100-3 .* accuracy (\S+) %", out) >= 98


def xor_claims(out):
    assert number(r"loss \S+, accuracy (\S+) %", out) == 100
    for name in ("batch", "stochastic", "minibatch"):
        assert re.search(rf"^{name} \(batch_size=\w+\) +\d+ ", out, re.M)


def digits_claims(out):
    assert number(r"test (\S+) %", out) > 50              # 10 epochs (--fast): ~90 %


EXAMPLES = {
    "curve_fit": (["curve_fit.png"], curve_fit_claims),
    "digits_3b1b": (["digits_history.png", "digits_weights.png"], digits_claims),
    "spiral": (["spiral.png"], spiral_claims),
    "xor_and_descent": (["xor.png", "descent.png"], xor_claims),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_writes_its_pictures(tmp_path, name):
    """`python examples/<name>.py --out DIR --fast` writes its PNGs (nothing else) and
    prints the numbers its docstring promises."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out", str(tmp_path),
         "--fast"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pngs, claims = EXAMPLES[name]
    for png in pngs:
        assert_png(tmp_path / png)
        assert f"wrote {tmp_path / png}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(pngs)
    claims(result.stdout)
