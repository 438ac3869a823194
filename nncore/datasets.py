"""Small data sets nncore makes itself (no downloads)."""
import numpy as np


def spiral(n_per_class=100, n_classes=3, noise=0.2, seed=0, dtype=np.float64):
    """The cs231n spiral: n_classes arms in 2-D that no linear classifier separates.

    Point i of arm c: r = i / n, t = c * 4 + 4 r + noise * N(0, 1),
    x = (r sin t, r cos t). Returns X (n_per_class * n_classes, 2), y (int64 labels).
    """
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    X = np.empty((n, 2), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    for c in range(n_classes):
        idx = slice(c * n_per_class, (c + 1) * n_per_class)
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.standard_normal(n_per_class) * noise
        X[idx] = np.column_stack([r * np.sin(t), r * np.cos(t)])
        y[idx] = c
    return X, y


def xor(dtype=np.float64):
    """The four XOR points: X (4, 2), y (4,) with y = x0 xor x1."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    return X, np.array([0, 1, 1, 0], dtype=np.int64)


def curve(dtype=np.float64):
    """The dose-response points of the study notes: low, medium, high dose -> 0, 1, 0.

    X (3, 1) = [[0], [0.5], [1]], y (3, 1) = [[0], [1], [0]].
    """
    return (np.array([[0.0], [0.5], [1.0]], dtype=dtype),
            np.array([[0.0], [1.0], [0.0]], dtype=dtype))
