"""Weight initialisers: w (n_out, n_in) drawn from the model's generator; biases start at 0.

    small    w ~ 0.01 N(0, 1)                            (the course notes)
    xavier   w ~ U(-l, l), l = sqrt(6 / (n_in + n_out))  (Glorot & Bengio; alias glorot)
    he       w ~ N(0, 2 / n_in)                          (He et al.; default for relu)
    zeros    w = 0   -- every neuron of a layer then gets the same gradient and
             they stay equal forever: allowed for teaching, with a warning.
"""
import warnings

import numpy as np

INITIALIZERS = ("small", "xavier", "glorot", "he", "zeros")


def default_for(activation):
    """he for the rectifiers, xavier for everything else."""
    return "he" if activation in ("relu", "leaky_relu") else "xavier"


def initial_weight(name, n_out, n_in, rng, dtype):
    """A (n_out, n_in) weight matrix in dtype, drawn by the initialiser `name`."""
    if name == "small":
        w = 0.01 * rng.standard_normal((n_out, n_in))
    elif name in ("xavier", "glorot"):
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_out, n_in))
    elif name == "he":
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
    elif name == "zeros":
        warnings.warn("init='zeros' cannot break symmetry: every neuron of the layer "
                      "gets the same gradient and they stay identical",
                      RuntimeWarning, stacklevel=4)
        w = np.zeros((n_out, n_in))
    else:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITIALIZERS))}; got {name!r}")
    return np.ascontiguousarray(w, dtype=dtype)
