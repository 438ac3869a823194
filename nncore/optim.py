"""Optimizers (the update rules run in nncore._optim) and learning-rate schedules.

Batch, stochastic and minibatch gradient descent are one optimizer with
different batch sizes: `fit(batch_size=None)` (the whole set), `1`, or `n`.
Weight decay applies to weights only, never to biases.
"""
import numbers

import numpy as np

from nncore import _checks, functional as F


# ---- learning-rate schedules: lr(epoch) = lr * factor(epoch), epoch from 0 ----

class StepDecay:
    """factor = gamma ** (epoch // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _checks.real_scalar(gamma, "gamma", positive=True)

    def __call__(self, epoch):
        try:
            return self.gamma ** (epoch // self.step_size)
        except OverflowError:              # gamma > 1: the rate goes to inf (TrainingDiverged)
            return float("inf")

    def config(self):
        return dict(type="StepDecay", step_size=self.step_size, gamma=self.gamma)


class ExponentialDecay:
    """factor = gamma ** epoch."""

    def __init__(self, gamma):
        self.gamma = _checks.real_scalar(gamma, "gamma", positive=True)

    def __call__(self, epoch):
        try:
            return self.gamma ** epoch
        except OverflowError:              # gamma > 1: the rate goes to inf (TrainingDiverged)
            return float("inf")

    def config(self):
        return dict(type="ExponentialDecay", gamma=self.gamma)


class InverseScaling:
    """factor = 1 / (epoch + 1) ** power_t (scikit-learn's 'invscaling', per epoch)."""

    def __init__(self, power_t=0.5):
        self.power_t = _checks.real_scalar(power_t, "power_t", nonnegative=True)

    def __call__(self, epoch):
        try:
            return 1.0 / (epoch + 1) ** self.power_t
        except OverflowError:              # a large power_t: the rate goes to 0
            return 0.0

    def config(self):
        return dict(type="InverseScaling", power_t=self.power_t)


SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseScaling)}


def schedule_from_config(config):
    if config is None:
        return None
    config = dict(config)
    return SCHEDULES[config.pop("type")](**config)


# ---- optimizers ----------------------------------------------------------------

class Optimizer:
    """Holds hyper-parameters and per-parameter state; `step` updates in place."""
    state_names = ()

    def __init__(self, lr, weight_decay=0.0, schedule=None):
        self.lr = _checks.real_scalar(lr, "lr", positive=True)
        self.weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be callable (epoch -> factor), got {schedule!r}")
        self.schedule = schedule
        self.epoch = 0                     # advanced by fit after each epoch
        self.state = {name: [] for name in self.state_names}

    def current_lr(self):
        """lr * schedule(epoch)."""
        return self.lr * (self.schedule(self.epoch) if self.schedule else 1.0)

    def _ensure_state(self, params):
        for name in self.state_names:
            arrays = self.state[name]
            if len(arrays) != len(params) or any(s.shape != p.shape or s.dtype != p.dtype
                                                 for s, p in zip(arrays, params)):
                self.state[name] = [np.zeros_like(p) for p in params]

    def step(self, params, grads, decay, *, backend="compiled"):
        """Update each params[i] from grads[i]; decay[i] says whether weight
        decay applies (weights yes, biases no)."""
        raise NotImplementedError

    def plan_key(self):
        """The hyper-parameters a compiled training plan bakes in (lr is passed per step)."""
        return (type(self).__name__, self.weight_decay) + tuple(
            getattr(self, k) for k in ("momentum", "nesterov", "betas", "eps") if hasattr(self, k))

    def config(self):
        cfg = dict(type=type(self).__name__, lr=self.lr, weight_decay=self.weight_decay,
                   epoch=self.epoch)
        if self.schedule is not None:
            if not hasattr(self.schedule, "config"):
                raise ValueError("a schedule without config() cannot be saved: use "
                                 "StepDecay, ExponentialDecay or InverseScaling")
            cfg["schedule"] = self.schedule.config()
        return cfg

    def state_arrays(self):
        """{'<state>.<i>': array} for saving."""
        return {f"{name}.{i}": a for name, arrays in self.state.items()
                for i, a in enumerate(arrays)}

    def load_state_arrays(self, arrays, params):
        """Restore state saved by state_arrays, checked against params."""
        for name in self.state_names:
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
                restored.append(np.array(a))
            self.state[name] = restored


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, PyTorch's convention:

        g = grad + weight_decay * w          (weights only)
        v = momentum * v + g                 (v starts at 0)
        w -= lr * v                          or, Nesterov, w -= lr * (g + momentum * v)
    """
    state_names = ("velocity",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, schedule=None):
        super().__init__(lr, weight_decay, schedule)
        self.momentum = _checks.real_scalar(momentum, "momentum", nonnegative=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if self.momentum == 0:
            self.state = {}
            self.state_names = ()

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")

    def step(self, params, grads, decay, *, backend="compiled"):
        self._ensure_state(params)
        lr = self.current_lr()
        velocity = self.state.get("velocity")
        for i, (p, g, d) in enumerate(zip(params, grads, decay)):
            F.sgd_step(p, g, velocity[i] if velocity else None, lr=lr,
                       momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay if d else 0.0, backend=backend)

    def config(self):
        return dict(super().config(), momentum=self.momentum, nesterov=self.nesterov)


class Adam(Optimizer):
    """Adam with bias correction (L2 weight decay added to the gradient, as torch.optim.Adam):

        g = grad + weight_decay * w;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """
    state_names = ("m", "v")

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, schedule=None):
        super().__init__(lr, weight_decay, schedule)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(_checks.real_scalar(b, "betas") for b in betas)
        for b in self.betas:
            if not 0 <= b < 1:
                raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        self.eps = _checks.real_scalar(eps, "eps", positive=True)
        self.t = 0

    def __repr__(self):
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, weight_decay={self.weight_decay})"

    def step(self, params, grads, decay, *, backend="compiled"):
        self._ensure_state(params)
        self.t += 1
        lr = self.current_lr()
        for p, g, m, v, d in zip(params, grads, self.state["m"], self.state["v"], decay):
            F.adam_step(p, g, m, v, step=self.t, lr=lr, beta1=self.betas[0],
                        beta2=self.betas[1], eps=self.eps,
                        weight_decay=self.weight_decay if d else 0.0, backend=backend)

    def config(self):
        return dict(super().config(), betas=list(self.betas), eps=self.eps, t=self.t)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}


def from_config(config):
    """An optimizer rebuilt from Optimizer.config() (state arrays restored separately)."""
    config = dict(config)
    cls = OPTIMIZERS[config.pop("type")]
    epoch = config.pop("epoch", 0)
    t = config.pop("t", 0)
    schedule = schedule_from_config(config.pop("schedule", None))
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    opt = cls(schedule=schedule, **config)
    opt.epoch = epoch
    if isinstance(opt, Adam):
        opt.t = t
    return opt
