"""Layers: Dense, a = f(x @ weight.T + bias), with its forward and backward side by side."""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Literal, Mapping, overload

import numpy as np

from nncore import _checks, functional as F
from nncore.init import INITIALIZERS, default_for, initial_weight

if TYPE_CHECKING:
    import weakref

    import numpy.typing as npt


def positive_int(value: object, name: str) -> int:
    if type(value) is int and value >= 1:            # (the usual call, ~1 us less)
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _own(a: np.ndarray, dtype: np.dtype, copy: bool) -> np.ndarray:
    if not copy and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype, order="C")


class Dense:
    """A fully connected layer: a = f(x @ weight.T + bias).

    Parameters
    ----------
    n_in, n_out : int. weight has shape (n_out, n_in), one row per neuron.
    activation : str, one of nncore.functional.ACTIVATIONS (default identity).
    init : str, one of nncore.init.INITIALIZERS; default he for relu/leaky_relu,
        xavier otherwise.
    bias : bool, whether the layer has a bias (n_out,).
    slope : float, the negative-side slope of leaky_relu.

    After `backward`, grad_weight (n_out, n_in) and grad_bias (n_out,) hold
    dL/dweight and dL/dbias. Weights exist once a model builds the layer
    (or `build(rng, dtype)` is called); before that the arrays are None.
    """

    weight: np.ndarray | None
    bias: np.ndarray | None            # also None, once built, for a layer without bias
    grad_weight: np.ndarray | None
    grad_bias: np.ndarray | None
    _x: np.ndarray | None              # the last forward's input, z and a
    _z: np.ndarray | None
    _a: np.ndarray | None
    _owner: weakref.ref | None         # the model the layer belongs to

    def __init__(self, n_in: int, n_out: int, activation: str = "identity", *,
                 init: str | None = None, bias: bool = True, slope: float = 0.01) -> None:
        self.n_in = positive_int(n_in, "n_in")
        self.n_out = positive_int(n_out, "n_out")
        self.activation = _checks.choice(activation, "activation", F.ACTIVATIONS)
        self.init = _checks.choice(init or default_for(activation), "init", INITIALIZERS)
        self.use_bias = bool(bias)
        self.slope = _checks.real_scalar(slope, "slope")
        self.weight = self.bias = self.grad_weight = self.grad_bias = None
        self._x = self._z = self._a = None
        self._rows = 0
        self._owner = None          # weakref to the model the layer belongs to

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready."""
        return dict(n_in=self.n_in, n_out=self.n_out, activation=self.activation,
                    init=self.init, bias=self.use_bias, slope=self.slope)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and copy the config and the weights: not the workspaces, the last
        input or the model the layer belongs to (a copy belongs to none)."""
        state: dict[str, Any] = {"config": self.config()}
        if self.weight is not None:
            state["dtype"] = self.weight.dtype.name
            state["arrays"] = self.arrays()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        Dense.__init__(self, **state["config"])
        if "arrays" in state:
            self.restore(state["arrays"], state["dtype"])

    @property
    def built(self) -> bool:
        return self.weight is not None

    def build(self, rng: np.random.Generator, dtype: npt.DTypeLike) -> Dense:
        """Draw the weights from rng (a numpy Generator), biases at 0, in dtype."""
        dtype = np.dtype(dtype)
        self.weight = initial_weight(self.init, self.n_out, self.n_in, rng, dtype)
        self.bias = np.zeros(self.n_out, dtype) if self.use_bias else None
        # np.zeros, not zeros_like: calloc'd, so a model that only predicts never
        # touches the gradient's pages
        self.grad_weight = np.zeros(self.weight.shape, dtype)
        self.grad_bias = np.zeros(self.n_out, dtype)
        self._rows = 0
        return self

    def array_names(self) -> tuple[str, ...]:
        """The names of the arrays a saved layer holds: weight, and bias if it has one."""
        return ("weight", "bias") if self.use_bias else ("weight",)

    def arrays(self) -> dict[str, np.ndarray]:
        """{name: array} of array_names(): the layer's own arrays, for saving (a built
        layer's, as parameters())."""
        return {name: getattr(self, name) for name in self.array_names()}

    def restore(self, arrays: Mapping[str, np.ndarray], dtype: npt.DTypeLike,
                copy: bool = True) -> Dense:
        """What build sets, with the weights taken from arrays: copied, or with
        copy=False the arrays themselves where they are C-contiguous and writeable."""
        dtype = np.dtype(dtype)
        self.weight = _own(arrays["weight"], dtype, copy)
        self.bias = _own(arrays["bias"], dtype, copy) if self.use_bias else None
        self.grad_weight = np.zeros(self.weight.shape, dtype)
        self.grad_bias = np.zeros(self.n_out, dtype)
        self._rows = 0
        return self

    # parameters() and gradients() are typed for a built layer (before build() they
    # hold the attributes' None)
    def parameters(self) -> list[np.ndarray]:
        """[weight, bias] (bias left out when the layer has none)."""
        params = [self.weight, self.bias] if self.use_bias else [self.weight]
        return params                                       # type: ignore[return-value]

    def gradients(self) -> list[np.ndarray]:
        grads = [self.grad_weight, self.grad_bias] if self.use_bias else [self.grad_weight]
        return grads                                        # type: ignore[return-value]

    def _workspace(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Views of n rows of the z, a, grad_z and grad_x buffers (grown, never shrunk);
        z is a where f' follows from a (nncore.functional.A_DERIVABLE)."""
        if n > self._rows:
            dt = self.weight.dtype                              # type: ignore[union-attr]
            self._zbuf = np.empty((n, self.n_out), dt)
            # one buffer where f' follows from a: a = f(z) is written over z
            self._abuf = (self._zbuf if F.a_derivable(self.activation, self.slope)
                          else np.empty_like(self._zbuf))
            self._gzbuf = np.empty((n, self.n_out), dt)
            self._gxbuf = np.empty((n, self.n_in), dt)
            self._rows = n
        return self._zbuf[:n], self._abuf[:n], self._gzbuf[:n], self._gxbuf[:n]

    def buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """New (z, a) buffers of n rows for infer (a is z where f' follows from a)."""
        z = np.empty((n, self.n_out), self._require_built().dtype)
        return z, (z if F.a_derivable(self.activation, self.slope) else np.empty_like(z))

    def infer(self, x: np.ndarray, z: np.ndarray, a: np.ndarray, *,
              backend: str = "compiled", finite_x: bool = False) -> np.ndarray:
        """a = f(x @ weight.T + bias) into the caller's buffers z, a (from buffers(n)):
        unlike forward, nothing of the layer is written, so threads may call it at once.
        finite_x: ValueError when x holds NaN or inf (F.dense_forward)."""
        return F.dense_forward(x, self.weight, self.bias,    # type: ignore[arg-type]
                               self.activation, z_out=z, a_out=a, slope=self.slope,
                               backend=backend, finite_x=finite_x)[1]

    def _require_built(self) -> np.ndarray:
        """The weight; RuntimeError when the layer has none yet."""
        if self.weight is None:
            raise RuntimeError(f"{self!r} has no weights yet: put it in a Sequential "
                               f"(which builds it) or call build(rng, dtype)")
        return self.weight

    def forward(self, x: np.ndarray, *, backend: str = "compiled",
                finite_x: bool = False) -> np.ndarray:
        """a = f(x @ weight.T + bias) for x (n, n_in); returns a view of the layer's
        workspace, valid until the next forward. finite_x: ValueError when x holds NaN
        or inf (F.dense_forward; the layer then keeps its last forward's x)."""
        weight = self._require_built()
        z, a, _, _ = self._workspace(x.shape[0])
        F.dense_forward(x, weight, self.bias, self.activation, z_out=z, a_out=a,
                        slope=self.slope, backend=backend, finite_x=finite_x)
        self._x, self._z, self._a = x, z, a
        return a

    @overload
    def backward(self, grad_a: np.ndarray, *, need_grad_x: Literal[True] = ...,
                 backend: str = ...) -> np.ndarray: ...

    @overload
    def backward(self, grad_a: np.ndarray, *, need_grad_x: bool,
                 backend: str = ...) -> np.ndarray | None: ...

    def backward(self, grad_a: np.ndarray, *, need_grad_x: bool = True,
                 backend: str = "compiled") -> np.ndarray | None:
        """Given dL/da (n, n_out) of the last forward, set grad_weight and grad_bias
        and return dL/dx (n, n_in) (None when need_grad_x is False)."""
        x = self._x
        if x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        _, _, gz, gx = self._workspace(x.shape[0])
        grad_x, _, _ = F.dense_backward(
            x, self.weight, self._z, self._a,     # type: ignore[arg-type]  # set by forward
            grad_a, self.activation,
            grad_x=gx if need_grad_x else None, grad_weight=self.grad_weight,
            grad_bias=self.grad_bias, grad_z=gz, need_grad_x=need_grad_x,
            slope=self.slope, backend=backend)
        return grad_x
