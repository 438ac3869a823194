"""Optimizers (the update rules run in nncore._kernels.optim) and learning-rate schedules.

Batch, stochastic and minibatch gradient descent are one optimizer with
different batch sizes: `fit(batch_size=None)` (the whole set), `1`, or `n`.
Weight decay applies to weights only, never to biases.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from nncore import _checks, functional as F


# ---- learning-rate schedules: lr(epoch) = lr * factor(epoch), epoch from 0 ----

class StepDecay:
    """factor = gamma ** (epoch // step_size)."""

    step_size: int
    gamma: float

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _checks.real_scalar(gamma, "gamma", positive=True)

    def __call__(self, epoch: int) -> float:
        try:
            return self.gamma ** (epoch // self.step_size)
        except OverflowError:              # gamma > 1: the rate goes to inf (TrainingDiverged)
            return float("inf")

    def config(self) -> dict[str, Any]:
        return dict(type="StepDecay", step_size=self.step_size, gamma=self.gamma)


class ExponentialDecay:
    """factor = gamma ** epoch."""

    def __init__(self, gamma: float) -> None:
        self.gamma = _checks.real_scalar(gamma, "gamma", positive=True)

    def __call__(self, epoch: int) -> float:
        try:
            return self.gamma ** epoch
        except OverflowError:              # gamma > 1: the rate goes to inf (TrainingDiverged)
            return float("inf")

    def config(self) -> dict[str, Any]:
        return dict(type="ExponentialDecay", gamma=self.gamma)


class InverseScaling:
    """factor = 1 / (epoch + 1) ** power_t (scikit-learn's 'invscaling', per epoch)."""

    def __init__(self, power_t: float = 0.5) -> None:
        self.power_t = _checks.real_scalar(power_t, "power_t", nonnegative=True)

    def __call__(self, epoch: int) -> float:
        try:
            return 1.0 / (epoch + 1) ** self.power_t
        except OverflowError:              # a large power_t: the rate goes to 0
            return 0.0

    def config(self) -> dict[str, Any]:
        return dict(type="InverseScaling", power_t=self.power_t)


Schedule = Callable[[int], float]     # epoch -> factor of lr

SCHEDULES: dict[str, type[StepDecay | ExponentialDecay | InverseScaling]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseScaling)}


def schedule_from_config(config: Mapping[str, Any] | None,
                         ) -> StepDecay | ExponentialDecay | InverseScaling | None:
    if config is None:
        return None
    config = dict(config)
    return SCHEDULES[config.pop("type")](**config)


# ---- optimizers ----------------------------------------------------------------

# class name -> class, filled as each optimizer class is defined
OPTIMIZERS: dict[str, type[Optimizer]] = {}

# Steps an optimizer may count: the compiled plan keeps the count in a C long.
MAX_STEPS = 2**62


class Optimizer:
    """Holds hyper-parameters, per-parameter state, its step count t and its epoch
    (which drives the schedule). What the training plan needs it says itself:
    `kernel` (the update kernel's name, in nncore.functional and the plan),
    `hyper()` (that kernel's parameters), `plan_state(params)` (its state arrays);
    after a run the fit driver calls `advance(steps, epochs)`.

    A subclass sets `kernel`, `state_names` (the state arrays, in the plan's
    order: state1, state2) and `hyper_types` ({name: "real" | "bool" | "pair"},
    the config fields beyond lr and weight_decay), and implements `hyper` and
    `step`.
    """
    kernel: ClassVar[str | None] = None
    state_names: ClassVar[tuple[str, ...]] = ()
    hyper_types: ClassVar[dict[str, str]] = {}

    lr: float
    weight_decay: float
    schedule: Schedule | None
    epoch: int
    t: int
    state: dict[str, list[np.ndarray]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        OPTIMIZERS[cls.__name__] = cls

    def __init__(self, lr: float, weight_decay: float = 0.0,
                 schedule: Schedule | None = None) -> None:
        self.lr = _checks.real_scalar(lr, "lr", positive=True)
        self.weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable (epoch -> factor), got {schedule!r}")
        self.schedule = schedule
        self.epoch = 0                     # epochs trained: the schedule's argument
        self.t = 0                         # updates made
        self.state = {name: [] for name in self.active_states()}

    def active_states(self) -> tuple[str, ...]:
        """The state arrays this configuration keeps (e.g. no velocity without momentum)."""
        return self.state_names

    def hyper(self) -> dict[str, Any]:
        """{name: value} of the update kernel's parameters (lr and weight_decay aside)."""
        return {}

    # -- learning rate and counters -------------------------------------------

    def lr_at(self, epoch: int) -> float:
        """lr * schedule(epoch)."""
        return self.lr * (self.schedule(epoch) if self.schedule else 1.0)

    def current_lr(self) -> float:
        return self.lr_at(self.epoch)

    def learning_rates(self, n_epochs: int) -> np.ndarray:
        """(n_epochs,) float64: the rates of the next n_epochs epochs."""
        if self.schedule is None:
            rates = np.empty(n_epochs)               # (np.full, ~1 us less)
            rates.fill(self.lr)
            return rates
        return np.array([self.lr_at(self.epoch + i) for i in range(n_epochs)], np.float64)

    def advance(self, steps: int = 0, epochs: int = 0) -> None:
        """Count `steps` more updates and `epochs` more epochs."""
        self.t += int(steps)
        self.epoch += int(epochs)

    # -- state ------------------------------------------------------------------

    def _ensure_state(self, params: Sequence[np.ndarray]) -> None:
        for name in self.active_states():
            arrays = self.state.get(name, ())
            if len(arrays) == len(params):
                for s, p in zip(arrays, params):
                    if s.shape != p.shape or s.dtype != p.dtype:
                        break
                else:
                    continue
            self.state[name] = [np.zeros_like(p) for p in params]

    def plan_state(self, params: Sequence[np.ndarray]) -> tuple[list[np.ndarray] | None, ...]:
        """(state1, state2): this optimizer's state arrays for params (made at zero
        if it has none yet, or they belong to other parameters), each a list
        parallel to params, or None."""
        self._ensure_state(params)
        active = self.active_states()
        return tuple(self.state[name] if name in active else None for name in self.state_names
                     ) + (None,) * (2 - len(self.state_names))

    def plan_key(self) -> tuple:
        """What a compiled training plan bakes in (lr is passed per step)."""
        return (type(self).__name__, self.weight_decay, *self.hyper().items())

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
             decay: Sequence[bool], *, backend: str = "compiled") -> None:
        """Update each params[i] from grads[i] now (one kernel call per parameter);
        decay[i] says whether weight decay applies (weights yes, biases no)."""
        raise NotImplementedError

    # -- saving -----------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        cfg = dict(type=type(self).__name__, lr=self.lr, weight_decay=self.weight_decay,
                   epoch=self.epoch, t=self.t)
        cfg.update((k, list(v) if isinstance(v, tuple) else v)
                   for k, v in self._hyper_config().items())
        if self.schedule is not None:
            if not hasattr(self.schedule, "config"):
                raise ValueError("a schedule without config() cannot be saved: use "
                                 "StepDecay, ExponentialDecay or InverseScaling")
            cfg["schedule"] = self.schedule.config()    # type: ignore[attr-defined]
        return cfg

    def _hyper_config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.hyper_types}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """{'<state>.<i>': array} of every state array."""
        return {f"{name}.{i}": a for name, arrays in self.state.items()
                for i, a in enumerate(arrays)}

    def saved_state(self, params: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """{'<state>.<j>': array} for saving with params: each state that matches
        params. A state that does not (the optimizer last stepped another model) is
        left out: the next step would restart it at zero, as loading without it does."""
        saved = self.state_arrays()
        arrays: dict[str, np.ndarray] = {}
        for name in self.active_states():
            group = [saved.get(f"{name}.{j}") for j in range(len(params))]
            if len(self.state.get(name, ())) == len(params) and all(
                    a is not None and a.shape == p.shape and a.dtype == p.dtype
                    for a, p in zip(group, params)):
                arrays.update((f"{name}.{j}", a)            # type: ignore[misc]  # no None
                              for j, a in enumerate(group))
        return arrays

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray], params: Sequence[np.ndarray],
                          copy: bool = True) -> None:
        """Restore state saved by saved_state, checked against params (copied, or with
        copy=False the arrays themselves where they are C-contiguous and writeable)."""
        for name in self.active_states():
            restored = []
            for i, p in enumerate(params):
                key = f"{name}.{i}"
                if key not in arrays:
                    if i == 0:
                        break                  # never stepped: no state saved
                    raise ValueError(f"optimizer state {key} is missing")
                a = arrays[key]
                if a.shape != p.shape or a.dtype != p.dtype:
                    raise ValueError(f"optimizer state {key} has shape {a.shape} {a.dtype}, "
                                     f"expected {p.shape} {p.dtype}")
                own = not copy and a.flags.c_contiguous and a.flags.writeable
                restored.append(a if own else np.array(a, order="C"))
            self.state[name] = restored
        self.check_state()

    def check_state(self) -> None:
        """Refuse state no update of this optimizer can produce (ValueError naming it)."""
        if not 0 <= self.t <= MAX_STEPS:
            raise ValueError(f"optimizer step count t = {self.t} outside [0, 2**62]")


    def _check_squares(self, name: str) -> None:
        """The state `name` is a mean of squares: no element below 0."""
        for i, v in enumerate(self.state.get(name, ())):
            if v.size and v.min() < 0:
                raise ValueError(f"optimizer.{name}.{i} holds a negative value "
                                 f"({v.min():g}): it is a mean of squares")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, PyTorch's convention:

        g = grad + weight_decay * w          (weights only)
        v = momentum * v + g                 (v starts at 0)
        w -= lr * v                          or, Nesterov, w -= lr * (g + momentum * v)
    """
    kernel = "sgd"
    state_names = ("velocity",)
    hyper_types = dict(momentum="real", nesterov="bool")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        self.momentum = _checks.real_scalar(momentum, "momentum", nonnegative=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        super().__init__(lr, weight_decay, schedule)

    def active_states(self) -> tuple[str, ...]:
        return self.state_names if self.momentum else ()

    def hyper(self) -> dict[str, Any]:
        return dict(momentum=self.momentum, nesterov=self.nesterov)

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
             decay: Sequence[bool], *, backend: str = "compiled") -> None:
        self._ensure_state(params)
        lr = self.current_lr()
        velocity = self.state.get("velocity")
        for i, (p, g, d) in enumerate(zip(params, grads, decay)):
            F.sgd_step(p, g, velocity[i] if velocity else None, lr=lr,
                       momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay if d else 0.0, backend=backend)
        self.t += 1


class Adam(Optimizer):
    """Adam with bias correction (L2 weight decay added to the gradient, as torch.optim.Adam):

        g = grad + weight_decay * w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """
    kernel = "adam"
    state_names = ("m", "v")
    hyper_types = dict(betas="pair", eps="real")

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Schedule | None = None) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(_checks.real_scalar(b, "betas") for b in betas)
        for b in self.betas:
            if not 0 <= b < 1:
                raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        self.eps = _checks.real_scalar(eps, "eps", positive=True)
        super().__init__(lr, weight_decay, schedule)

    def hyper(self) -> dict[str, Any]:
        return dict(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps)

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay})"

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
             decay: Sequence[bool], *, backend: str = "compiled") -> None:
        self._ensure_state(params)
        self.t += 1
        lr = self.current_lr()
        for p, g, m, v, d in zip(params, grads, self.state["m"], self.state["v"], decay):
            F.adam_step(p, g, m, v, step=self.t, lr=lr, beta1=self.betas[0],
                        beta2=self.betas[1], eps=self.eps,
                        weight_decay=self.weight_decay if d else 0.0, backend=backend)

    def check_state(self) -> None:
        super().check_state()
        self._check_squares("v")


class RMSprop(Optimizer):
    """RMSprop, PyTorch's torch.optim.RMSprop (centered=False):

        g = grad + weight_decay * w;  v = alpha v + (1 - alpha) g^2;  d = g / (sqrt(v) + eps)
        w -= lr * d                   or, with momentum, b = momentum b + d;  w -= lr * b
    """
    kernel = "rmsprop"
    state_names = ("square_avg", "momentum_buffer")
    hyper_types = dict(alpha="real", eps="real", momentum="real")

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 schedule: Schedule | None = None) -> None:
        self.alpha = _checks.real_scalar(alpha, "alpha")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {self.alpha}")
        self.eps = _checks.real_scalar(eps, "eps", positive=True)
        self.momentum = _checks.real_scalar(momentum, "momentum", nonnegative=True)
        super().__init__(lr, weight_decay, schedule)

    def active_states(self) -> tuple[str, ...]:
        return self.state_names if self.momentum else self.state_names[:1]

    def hyper(self) -> dict[str, Any]:
        return dict(alpha=self.alpha, eps=self.eps, momentum=self.momentum)

    def __repr__(self) -> str:
        return (f"RMSprop(lr={self.lr}, alpha={self.alpha}, eps={self.eps}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay})")

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
             decay: Sequence[bool], *, backend: str = "compiled") -> None:
        self._ensure_state(params)
        lr = self.current_lr()
        buffers = self.state.get("momentum_buffer")
        for i, (p, g, d) in enumerate(zip(params, grads, decay)):
            F.rmsprop_step(p, g, self.state["square_avg"][i], buffers[i] if buffers else None,
                           lr=lr, alpha=self.alpha, eps=self.eps, momentum=self.momentum,
                           weight_decay=self.weight_decay if d else 0.0, backend=backend)
        self.t += 1

    def check_state(self) -> None:
        super().check_state()
        self._check_squares("square_avg")


def from_config(config: Mapping[str, Any]) -> Optimizer:
    """An optimizer rebuilt from Optimizer.config() (state arrays restored separately)."""
    config = dict(config)
    cls = OPTIMIZERS[config.pop("type")]
    epoch = config.pop("epoch", 0)
    t = config.pop("t", 0)
    schedule = schedule_from_config(config.pop("schedule", None))
    for name, kind in cls.hyper_types.items():
        if kind == "pair" and name in config:
            config[name] = tuple(config[name])
    opt = cls(schedule=schedule, **config)
    opt.epoch = epoch
    opt.t = t
    opt.check_state()
    return opt
