"""Pictures of models and training: loss curves, decision regions, first-layer weights,
and the curve decomposition of a one-hidden-layer network.

matplotlib is optional (``pip install "nncore-mlp[plot]"``, in a checkout
``pip install -e ".[plot]"``) and imported by the first
drawing call, never by ``import nncore``. Each function draws on a new figure, or on the
axes passed in, returns ``(fig, ax)`` or ``(fig, axes)`` and never calls ``plt.show()``.
`curve_components` computes the decomposition without matplotlib.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from nncore import reference
from nncore.callbacks import History
from nncore.layers import Dense
from nncore.model import Sequential

if TYPE_CHECKING:
    import numpy.typing as npt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

INSTALL_HINT = 'pip install "nncore-mlp[plot]" (in a checkout: pip install -e ".[plot]")'


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"nncore.plot draws with matplotlib, which is not installed: "
                          f"{INSTALL_HINT}") from exc
    return plt


def _class_colors(plt, k):
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(k)]


# ---- training curves ------------------------------------------------------------

def history(history: History | dict[str, Sequence[float]],
            metrics: str | Sequence[str] = ("loss", "accuracy"), *,
            axes: Sequence[Axes] | np.ndarray | None = None,
            label: str | None = None) -> tuple[Figure | SubFigure, list[Axes]]:
    """Training curves, one panel per metric: the training value per epoch (solid) and,
    where the History holds it, the validation value ``val_<metric>`` (dashed).

    Parameters
    ----------
    history : nncore.callbacks.History (what ``fit`` returns) or a dict
        {metric: [value per epoch]}
    metrics : str or sequence of str. Metrics the history lacks are skipped
        (``accuracy`` after an mse fit); none present is a ValueError.
    axes : sequence of matplotlib Axes, one per metric drawn, optional. Draw on them
        instead of a new figure, e.g. to overlay several runs.
    label : str, optional. Names this run in the legends (``"<label> train"``, ...).

    Returns
    -------
    fig : matplotlib Figure
    axes : list of Axes, one per metric drawn
    """
    logs: Mapping[str, Sequence[float]]
    if isinstance(history, History):
        logs, epochs = history.history, [e + 1 for e in history.epoch]
    elif isinstance(history, dict):
        logs, epochs = history, None
    else:
        raise TypeError(f"history must be a History (from fit) or a dict of lists, "
                        f"got {type(history).__name__}")
    if isinstance(metrics, str):
        metrics = (metrics,)
    drawn = [m for m in metrics if m in logs or f"val_{m}" in logs]
    if not drawn:
        raise ValueError(f"the history holds none of {list(metrics)}; it has {sorted(logs)}")
    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, len(drawn), figsize=(4.5 * len(drawn), 3.4),
                                 layout="constrained", squeeze=False)
        axes = list(axes[0])                            # type: ignore[arg-type]
    else:
        axes = list(np.ravel(axes))                     # type: ignore[arg-type]  # of Axes
        if len(axes) != len(drawn):
            raise ValueError(f"axes holds {len(axes)} Axes for the {len(drawn)} metrics "
                             f"drawn ({drawn})")
        fig = axes[0].figure
    prefix = f"{label} " if label else ""
    for ax, metric in zip(axes, drawn):
        color = None
        for key, style, name in ((metric, "-", "train"), (f"val_{metric}", "--", "validation")):
            if key not in logs:
                continue
            values = np.asarray(logs[key], dtype=float)
            x = epochs if epochs is not None else np.arange(1, len(values) + 1)
            (line,) = ax.plot(x, values, style, color=color, label=prefix + name)
            color = line.get_color()          # validation in the colour of its run
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig, axes


# ---- decision regions ---------------------------------------------------------------

def _grid_labels(model, grid):
    """Class labels of the grid points: predict for classification losses; for mse,
    argmax of the outputs (or output > 0.5 for a single output)."""
    loss = model._trained_loss()
    if loss.classification:
        labels = model.predict(grid)
    else:
        out = model.predict(grid)
        labels = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"decision_boundary draws one label per point, but this model "
                         f"predicts {labels.shape[1]} labels per point (multi-label "
                         f"binary_cross_entropy)")
    return labels.astype(np.int64)


def decision_boundary(model: Sequential, X: npt.ArrayLike, y: npt.ArrayLike, *,
                      resolution: int = 200, padding: float = 0.1,
                      ax: Axes | None = None) -> tuple[Figure | SubFigure, Axes]:
    """The class the model predicts at every point of a 2-D grid (shaded regions),
    with the points (X, y) on top in their true class colours.

    Parameters
    ----------
    model : a fitted Sequential with 2 inputs (its loss decides the labels:
        ``predict`` for classification losses; for mse, argmax of the outputs,
        or output > 0.5 for a single output)
    X : array (n, 2); y : array (n,) of integer labels
    resolution : int >= 2, grid points along each axis
    padding : float >= 0, margin around the data, as a fraction of its range
    ax : matplotlib Axes, optional

    Returns
    -------
    fig, ax
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary draws 2-D inputs: X must have shape (n, 2), "
                         f"got {X.shape}")
    if not isinstance(model, Sequential) or model.n_inputs != 2:
        raise ValueError(f"decision_boundary needs a model with 2 inputs, got {model!r}")
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} points")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - padding * span, hi + padding * span
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    regions = _grid_labels(model, grid).reshape(g0.shape)
    y = y.astype(np.int64)
    k = int(max(model.n_outputs, 2, regions.max() + 1, y.max() + 1 if y.size else 0))

    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.2), layout="constrained")
    else:
        fig = ax.figure
    colors = _class_colors(plt, k)
    cmap = ListedColormap(colors)
    ax.pcolormesh(g0, g1, regions, cmap=cmap, vmin=-0.5, vmax=k - 0.5, alpha=0.3,
                  shading="nearest")
    ax.scatter(X[:, 0], X[:, 1], c=[colors[c] for c in y], s=18 if len(X) > 50 else 60,
               edgecolors="k",
               linewidths=0.5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    return fig, ax


# ---- first-layer weights as images ------------------------------------------------

def _weight_matrix(layer_or_weight):
    if isinstance(layer_or_weight, Sequential):
        layer_or_weight = layer_or_weight.layers[0]
    if isinstance(layer_or_weight, Dense):
        layer_or_weight._require_built()
        layer_or_weight = layer_or_weight.weight
    w = np.asarray(layer_or_weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"the weight must be 2-D (n_out, n_in), got shape {w.shape}")
    return w


def weight_images(layer_or_weight: Dense | Sequential | npt.ArrayLike,
                  shape: Sequence[int] | None = None, n: int = 16, *,
                  ncols: int | None = None, cmap: str = "RdBu") -> tuple[Figure, np.ndarray]:
    """The rows of a first-layer weight matrix drawn as images: unit i's weights
    w_i (n_in,), reshaped to `shape`, show which input pixels push its z_i = w_i . x + b_i
    up (blue) or down (red) -- 3Blue1Brown's picture of what a neuron looks for.

    Each image has its own symmetric colour scale, [-max|w_i|, max|w_i|].

    Parameters
    ----------
    layer_or_weight : Dense, Sequential (its first layer) or array (n_out, n_in)
    shape : (height, width) with height * width = n_in, e.g. (8, 8) or (28, 28);
        default the square side sqrt(n_in) when n_in is a perfect square
    n : int >= 1, how many units (the first n rows; at most n_out)
    ncols : int, optional; default ceil(sqrt(n))
    cmap : matplotlib colormap name (a diverging one)

    Returns
    -------
    fig : matplotlib Figure
    axes : ndarray (nrows, ncols) of Axes (those past n are switched off)
    """
    w = _weight_matrix(layer_or_weight)
    n_out, n_in = w.shape
    if shape is None:
        side = math.isqrt(n_in)
        if side * side != n_in:
            raise ValueError(f"the layer has {n_in} inputs, not a square number: pass "
                             f"shape=(height, width)")
        shape = (side, side)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape[0] * shape[1] != n_in:
        raise ValueError(f"shape {shape} does not hold the layer's {n_in} inputs")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    n = min(n, n_out)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.5 * nrows + 0.4),
                             layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        vmax = float(np.abs(w[i]).max()) or 1.0
        ax.imshow(w[i].reshape(shape), cmap=cmap, vmin=-vmax, vmax=vmax,
                  interpolation="nearest")
        ax.set_title(f"unit {i}", fontsize=8)
    fig.suptitle(f"first-layer weights, {n} of {n_out} units (blue +, red -)", fontsize=10)
    return fig, axes


# ---- the curve picture of a 1-H-1 network ---------------------------------------------

def _one_hidden_layer(model):
    if not isinstance(model, Sequential):
        raise TypeError(f"curve_decomposition takes an nncore Sequential, "
                        f"got {type(model).__name__}")
    if len(model.layers) != 2 or model.n_inputs != 1 or model.n_outputs != 1:
        sizes = [model.n_inputs] + [layer.n_out for layer in model.layers]
        raise ValueError(f"curve_decomposition takes a network with 1 input, one hidden "
                         f"layer and 1 output (1-H-1: two Dense layers); this one is "
                         f"{'-'.join(map(str, sizes))}")
    return model.layers


def curve_components(model: Sequential, x: npt.ArrayLike) -> dict[str, Any]:
    """The pieces of a 1-H-1 network's output at the points x, in float64
    (no matplotlib needed). With w_i, b_i the hidden layer's weights and biases,
    v_i the output weights, c the output bias, f and g the two activations:

        hidden  a_i(x) = f(w_i x + b_i)           (n, H)   (softmax: over the H units)
        scaled  v_i a_i(x)                        (n, H)
        sum     s(x) = sum_i v_i a_i(x)           (n,)
        z       s(x) + c                          (n,)
        output  g(z), the network's output        (n,)     (z itself when g is identity)

    Parameters
    ----------
    model : Sequential of two Dense layers, 1 input, 1 output
    x : array (n,) or (n, 1)

    Returns
    -------
    dict with the arrays above and x (n,), plus w, b, v (H,) and c (float)
    """
    hidden, out = _one_hidden_layer(model)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    w = hidden.weight[:, 0].astype(np.float64)
    b = (hidden.bias.astype(np.float64) if hidden.use_bias else np.zeros_like(w))
    v = out.weight[0].astype(np.float64)
    c = float(out.bias[0]) if out.use_bias else 0.0
    a = reference.activation_forward(hidden.activation, x[:, None] * w + b,
                                     slope=hidden.slope)
    scaled = a * v
    total = scaled.sum(axis=1)
    z = total + c
    output = reference.activation_forward(out.activation, z[:, None], slope=out.slope)[:, 0]
    return dict(x=x, hidden=a, scaled=scaled, sum=total, z=z, output=output,
                w=w, b=b, v=v, c=c)


def curve_decomposition(model: Sequential, x_range: tuple[float, float] | None = None, *,
                        X: npt.ArrayLike | None = None, y: npt.ArrayLike | None = None,
                        n_points: int = 400, axes: Sequence[Axes] | np.ndarray | None = None,
                        max_legend: int = 6) -> tuple[Figure | SubFigure, list[Axes]]:
    """The curve picture of a 1-H-1 network: each hidden unit bends its own piece of the
    activation curve, f(w_i x + b_i) (left); the output layer scales each by v_i and adds
    them up, then shifts the sum by the output bias c (right). The last curve is the
    network's output (passed through g when the output layer has an activation g).

    Parameters
    ----------
    model : Sequential of two Dense layers with 1 input and 1 output, any activations;
        anything else is a ValueError
    x_range : (lo, hi), optional; default the range of X padded by 10 %, else (-1, 1)
    X, y : the data points (n, 1) and (n,) or (n, 1), optional; drawn on the right
    n_points : int >= 2, points along x
    axes : two matplotlib Axes, optional
    max_legend : int, units named in the legend (more units share one entry)

    Returns
    -------
    fig : matplotlib Figure
    axes : list of two Axes. The lines carry gids ``hidden-i``, ``scaled-i``, ``sum``,
        ``z`` (only with an output activation) and ``output``.
    """
    hidden, out = _one_hidden_layer(model)
    if X is not None:
        X = np.asarray(X, dtype=np.float64).reshape(-1)
    if x_range is None:
        if X is not None and X.size:
            lo, hi = float(X.min()), float(X.max())
            pad = 0.1 * (hi - lo) if hi > lo else 1.0
            x_range = (lo - pad, hi + pad)
        else:
            x_range = (-1.0, 1.0)
    lo, hi = map(float, x_range)
    if not hi > lo:
        raise ValueError(f"x_range must be (lo, hi) with lo < hi, got {x_range!r}")
    parts = curve_components(model, np.linspace(lo, hi, n_points))
    x, H = parts["x"], parts["hidden"].shape[1]
    f, g = hidden.activation, out.activation

    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    else:
        fig = axes[0].figure
    axes = list(np.ravel(axes))                         # type: ignore[arg-type]  # of Axes
    left, right = axes
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(H)]
    for i in range(H):
        w, b, v = parts["w"][i], parts["b"][i], parts["v"][i]
        named = H <= max_legend
        left.plot(x, parts["hidden"][:, i], color=colors[i], gid=f"hidden-{i}",
                  label=f"a_{i} = {f}({w:.3g} x {b:+.3g})" if named else
                  (f"{H} units: {f}(w_i x + b_i)" if i == 0 else None))
        right.plot(x, parts["scaled"][:, i], "--", color=colors[i], gid=f"scaled-{i}",
                   label=f"v_{i} a_{i},  v_{i} = {v:+.3g}" if named else
                   ("v_i f(w_i x + b_i)" if i == 0 else None))
    right.plot(x, parts["sum"], ":", color="0.3", lw=2, gid="sum", label="sum  Σ v_i a_i")
    c = parts["c"]
    if g == "identity":
        right.plot(x, parts["output"], color="k", lw=2.5, gid="output",
                   label=f"output = sum {c:+.3g}")
    else:
        right.plot(x, parts["z"], "-.", color="0.5", lw=1.5, gid="z",
                   label=f"z = sum {c:+.3g}")
        right.plot(x, parts["output"], color="k", lw=2.5, gid="output",
                   label=f"output = {g}(z)")
    if X is not None:
        if y is None:
            raise ValueError("pass y with X (the targets drawn at the points X)")
        yv = np.asarray(y, dtype=np.float64).reshape(-1)
        if yv.shape != X.shape:
            raise ValueError(f"y has {yv.size} values for {X.size} points")
        right.scatter(X, yv, s=60, color="crimson", edgecolors="k", zorder=5, label="data")
    left.set_title(f"hidden units: a_i = {f}(w_i x + b_i)")
    right.set_title("scaled by v_i, summed, shifted by the output bias")
    for ax in axes:
        ax.set_xlabel("x")
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig, axes
