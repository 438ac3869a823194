"""Losses by name or object: the value and dL/d output of a batch, plus what a
trained model's output means (labels, probabilities).

Formulas and conventions: nncore.functional.loss_forward_backward.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nncore import _checks, functional as F

if TYPE_CHECKING:
    import numpy.typing as npt


class Loss:
    """Base class: `name` selects the kernel; subclasses say how to read outputs."""
    name: ClassVar[str | None] = None
    classification: ClassVar[bool] = False

    def __call__(self, output: np.ndarray, target: npt.ArrayLike,
                 grad_out: np.ndarray | None = None, *,
                 sample_weight: npt.ArrayLike | None = None,
                 backend: str = "compiled") -> tuple[float, np.ndarray]:
        """(value, dL/d output) of a batch."""
        return F.loss_forward_backward(self.name,     # type: ignore[arg-type]  # None: refused
                                       output, target, grad_out,
                                       sample_weight=sample_weight, backend=backend)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def targets(self, y: npt.ArrayLike, n: int, n_outputs: int,
                dtype: npt.DTypeLike) -> np.ndarray:
        """y checked and converted once per fit: (n, n_outputs) floats or (n,) labels."""
        y = _checks.asarray(y, "y")
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.dtype.kind not in "fiu":
            raise TypeError(f"y must hold numbers for {self.name}, got dtype {y.dtype}")
        y = np.ascontiguousarray(y, dtype=dtype)
        _checks.shape(y, "y", (n, n_outputs))
        if not F.all_finite(y):
            raise ValueError("y contains NaN or inf")
        return y

    def predict(self, output: np.ndarray) -> np.ndarray:
        return output

    def predict_proba(self, output: np.ndarray) -> np.ndarray:
        raise ValueError(f"{self.name} does not model probabilities")


class MSE(Loss):
    """L = (1/N) sum_i 1/2 ||o_i - t_i||^2."""
    name = "mse"


class SoftmaxCrossEntropy(Loss):
    """L = (1/N) sum_i logsumexp(o_i) - o_i[y_i], from logits (the last layer stays linear)."""
    name = "softmax_cross_entropy"
    classification = True

    def targets(self, y: npt.ArrayLike, n: int, n_outputs: int,
                dtype: npt.DTypeLike) -> np.ndarray:
        return labels(y, n, n_outputs, self.name)

    def predict(self, output: np.ndarray) -> np.ndarray:
        return np.argmax(output, axis=1)

    def predict_proba(self, output: np.ndarray) -> np.ndarray:
        return F.activation_forward("softmax", output)


class Hinge(SoftmaxCrossEntropy):
    """L = (1/N) sum_i sum_{j != y_i} max(0, o_ij - o_iy + 1) (multiclass SVM)."""
    name = "hinge"

    def predict_proba(self, output: np.ndarray) -> np.ndarray:
        return Loss.predict_proba(self, output)


class BinaryCrossEntropy(Loss):
    """L = (1/N) sum_ij max(o,0) - o t + log1p(exp(-|o|)), from logits; one
    independent 0/1 label per output."""
    name = "binary_cross_entropy"
    classification = True

    def targets(self, y: npt.ArrayLike, n: int, n_outputs: int,
                dtype: npt.DTypeLike) -> np.ndarray:
        y = super().targets(y, n, n_outputs, dtype)
        if ((y < 0) | (y > 1)).any():
            raise ValueError("y must lie in [0, 1] for binary_cross_entropy")
        return y

    def predict(self, output: np.ndarray) -> np.ndarray:
        labels_ = (output > 0).astype(np.int64)
        return labels_[:, 0] if output.shape[1] == 1 else labels_

    def predict_proba(self, output: np.ndarray) -> np.ndarray:
        return F.activation_forward("sigmoid", output)


def labels(y: npt.ArrayLike, n: int, n_classes: int, name: str) -> np.ndarray:
    """Integer class labels (n,) in [0, n_classes), as intp."""
    y = _checks.asarray(y, "y")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels for {name}, got dtype {y.dtype}")
    _checks.shape(y, "y", (n,))
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise ValueError(f"y holds label {bad}, outside [0, {n_classes}) for the "
                         f"model's {n_classes} outputs")
    return np.ascontiguousarray(y, dtype=np.intp)


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (MSE, SoftmaxCrossEntropy,
                                                          BinaryCrossEntropy, Hinge)}


def get(loss: str | Loss) -> Loss:
    """A Loss from a name in LOSSES or a Loss instance."""
    if isinstance(loss, Loss):
        return loss
    return LOSSES[_checks.choice(loss, "loss", tuple(LOSSES))]()


def saved_name(loss: str | Loss) -> str:
    """The name a model file keeps for loss (a name or a Loss of LOSSES); ValueError
    for a loss that could not be loaded back (a custom Loss)."""
    if isinstance(loss, str):
        loss = get(loss)
    name = getattr(loss, "name", None)
    if name is None or type(loss) is not LOSSES.get(name):
        raise ValueError(f"cannot save the model: its loss {loss!r} is not one of "
                         f"nncore.losses.LOSSES ({', '.join(LOSSES)})")
    return name
