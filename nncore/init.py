"""Weight initialisers: w (n_out, n_in) drawn from the model's generator; biases start at 0.

    small    w ~ 0.01 N(0, 1)                            (the course notes)
    xavier   w ~ U(-l, l), l = sqrt(6 / (n_in + n_out))  (Glorot & Bengio; alias glorot)
    he       w ~ N(0, 2 / n_in)                          (He et al.; default for relu)
    zeros    w = 0   -- every neuron of a layer then gets the same gradient and
             they stay equal forever: allowed for teaching, with a warning.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

INITIALIZERS: tuple[str, ...] = ("small", "xavier", "glorot", "he", "zeros")


def default_for(activation: str) -> str:
    """he for the rectifiers, xavier for everything else."""
    return "he" if activation in ("relu", "leaky_relu") else "xavier"


# Rows are drawn in float64 blocks of about this many values and cast into the
# result, so building a layer holds one block of temporaries, not two float64
# copies of the weight (the values are the same as one draw of the whole matrix:
# the generator's stream is consumed in the same order).
DRAW_BLOCK = 1 << 16


def initial_weight(name: str, n_out: int, n_in: int, rng: np.random.Generator,
                   dtype: npt.DTypeLike) -> np.ndarray:
    """A (n_out, n_in) weight matrix in dtype, drawn by the initialiser `name`."""
    if name not in INITIALIZERS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITIALIZERS))}; got {name!r}")
    if name == "zeros":
        warnings.warn("init='zeros' cannot break symmetry: every neuron of the layer "
                      "gets the same gradient and they stay identical",
                      RuntimeWarning, stacklevel=4)
        return np.zeros((n_out, n_in), dtype)
    limit = np.sqrt(6.0 / (n_in + n_out))                       # xavier, glorot
    scale = 0.01 if name == "small" else np.sqrt(2.0 / n_in)    # small, he
    w = np.empty((n_out, n_in), dtype)
    rows = max(1, DRAW_BLOCK // n_in)
    for i in range(0, n_out, rows):
        shape = (min(rows, n_out - i), n_in)
        w[i:i + rows] = (rng.uniform(-limit, limit, shape) if name in ("xavier", "glorot")
                         else rng.standard_normal(shape) * scale)
    return w
