"""Sequential models: a stack of Dense layers, trained by minibatch gradient descent.

    forward:   a_0 = X,  a_l = f_l(a_{l-1} @ W_l.T + b_l)
    loss:      L = loss(a_L, y) + 1/2 l2 sum_l ||W_l||^2
    backward:  the chain rule from the output back, layer by layer
    update:    each parameter by the optimizer, from its gradient

Training runs on a plan (nncore.functional.train_plan: the compiled StepPlan, or
its NumPy twin with backend="numpy"); nncore.training drives it for fit.
"""
from __future__ import annotations

import numbers
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from nncore import _checks, io, losses as losses_mod, optim as optim_mod, schema, training
from nncore import functional as F
from nncore.layers import Dense, positive_int
from nncore.training import TrainingDiverged
from nncore._threads import get_num_threads
from nncore._usage import Usage, adopt
from nncore._version import __version__

if TYPE_CHECKING:
    import numpy.typing as npt

    from nncore.callbacks import Callback, History
    from nncore.datasets import PathLike
    from nncore.functional import TrainPlan
    from nncore.losses import Loss
    from nncore.optim import Optimizer

DTYPES = schema.DTYPES


def _dtype(dtype: npt.DTypeLike) -> np.dtype:
    if dtype is None:                 # np.dtype(None) is float64, not the default
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dt.name}")
    return dt


class Sequential:
    """A stack of layers trained together.

    Parameters
    ----------
    layers : list of Dense; each layer's n_in is the previous layer's n_out.
    seed : int or None. Seeds the weights and the shuffling: the same seed
        gives bitwise the same trained weights, whatever the thread count.
    dtype : "float32" (default) or "float64"
    l2 : float >= 0. Adds 1/2 l2 sum ||W||^2 to the loss (weights, not biases).
    backend : "compiled" (default) or "numpy": run every step through the
        NumPy twins instead, to check the compiled run step by step.
    """

    layers: list[Dense]
    dtype: np.dtype
    l2: float
    backend: str
    seed: int | None
    loss: str | Loss | None            # the last loss used; a name may be set by hand
    optimizer: Optimizer | None
    history: History | None
    stop_training: bool
    _shuffle_rng: np.random.Generator
    _plan_cache: tuple[tuple, TrainPlan] | None
    _usage: Usage
    _local: threading.local

    def __init__(self, layers: list[Dense] | tuple[Dense, ...], *, seed: int | None = None,
                 dtype: npt.DTypeLike = "float32", l2: float = 0.0,
                 backend: str = "compiled") -> None:
        if isinstance(layers, Dense) or not isinstance(layers, (list, tuple)):
            raise TypeError(f"layers must be a list of Dense layers, got "
                            f"{type(layers).__name__}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a Dense layer, got {type(layer).__name__}")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(f"layers[{i}] takes {layers[i].n_in} inputs but layers[{i - 1}] "
                                 f"gives {layers[i - 1].n_out} outputs")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
        adopt(self, layers)
        self.layers = layers
        self.dtype = _dtype(dtype)
        self.l2 = _checks.real_scalar(l2, "l2", nonnegative=True)
        self.backend = _checks.backend(backend)
        self.seed = seed
        rng = np.random.default_rng(seed)
        for layer in layers:
            layer.build(rng, self.dtype)
        self._shuffle_rng = np.random.default_rng(rng.integers(2**63))
        self.loss = None
        self.optimizer = None
        self._init_runtime()

    def _init_runtime(self) -> None:
        """State that lives only in this process (not saved, not pickled)."""
        self.history = None
        self.stop_training = False
        self._plan_cache = None
        self._usage = Usage(self)
        self._local = threading.local()          # each thread's inference buffers

    # ---- structure -------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], dtype={self.dtype.name})"

    def parameters(self) -> list[np.ndarray]:
        """[W_1, b_1, W_2, b_2, ...]: the arrays themselves (updated in place)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self) -> list[np.ndarray]:
        """[dL/dW_1, dL/db_1, ...], filled by backward and compute_gradients."""
        return [g for layer in self.layers for g in layer.gradients()]

    def decay_mask(self) -> list[bool]:
        """[True, False, ...] per parameter: weight decay applies to weights, not biases."""
        return [i == 0 for layer in self.layers for i in range(len(layer.parameters()))]

    def n_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for g in self.gradients():
            g.fill(0)

    # ---- state: config + arrays (files, pickle) ----------------------------

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(config, arrays): the JSON-ready config of nncore.schema and the model's own
        arrays {name: ndarray} (not copies); what save writes and pickle carries.
        Raises ValueError for a model that could not be loaded back (a custom loss
        or schedule, non-finite weights, ...)."""
        config = dict(
            format=schema.FORMAT, format_version=schema.FORMAT_VERSION,
            nncore_version=__version__, dtype=self.dtype.name, l2=self.l2,
            backend=self.backend, seed=self.seed,
            layers=[layer.config() for layer in self.layers],
            loss=None if self.loss is None else losses_mod.saved_name(self.loss),
            optimizer=None if self.optimizer is None else self.optimizer.config(),
            shuffle_rng=self._shuffle_rng.bit_generator.state)
        config = schema.json_ready(config)
        arrays: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            arrays.update((f"layers.{i}.{k}", a) for k, a in layer.arrays().items())
        if self.optimizer is not None:
            arrays.update((f"optimizer.{k}", a) for k, a in
                          self.optimizer.saved_state(self.parameters()).items())
        try:                          # never write what load would refuse
            schema.check_arrays(schema.parse(config), arrays)
            if self.optimizer is not None:
                schema.wrapped(self.optimizer.check_state, "optimizer state")
        except schema.ModelFileError as e:
            raise ValueError(f"cannot save the model: {e}") from None
        return config, arrays

    def set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray], *,
                  copy: bool = True) -> Sequential:
        """Fill this model from (config, arrays) as get_state returns them: all of it
        or, when anything is wrong (ModelFileError), none of it. copy=False takes the
        arrays themselves where they fit (nncore.load: one copy of each in memory)."""
        spec = schema.parse(config)
        schema.check_arrays(spec, arrays)
        dtype, layers = spec["dtype"], spec["layers"]
        for i, layer in enumerate(layers):
            layer.restore({k: arrays[f"layers.{i}.{k}"] for k in layer.array_names()}, dtype,
                          copy=copy)
        optimizer = spec["optimizer"]
        if optimizer is not None:
            params = [p for layer in layers for p in layer.parameters()]
            state = {key[len("optimizer."):]: a for key, a in arrays.items()
                     if key.startswith("optimizer.")}
            schema.wrapped(optimizer.load_state_arrays, "optimizer state", state, params, copy)
        rng = np.random.Generator(np.random.PCG64(0))
        schema.wrapped(setattr, "shuffle_rng", rng.bit_generator, "state", spec["shuffle_rng"])
        # nothing below can fail: the model is filled completely or not at all
        adopt(self, layers)
        self.layers = layers
        self.dtype = dtype
        self.l2, self.backend, self.seed = spec["l2"], spec["backend"], spec["seed"]
        self._shuffle_rng = rng
        self.loss = None if spec["loss"] is None else losses_mod.get(spec["loss"])
        self.optimizer = optimizer
        self._init_runtime()
        return self

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], *,
                   copy: bool = True) -> Sequential:
        """A new model from (config, arrays); see set_state."""
        return cls.__new__(cls).set_state(config, arrays, copy=copy)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the state a file holds (get_state): not the plan, the workspaces, the
        per-thread buffers or the usage guard, which the unpickled model makes anew
        when it needs them."""
        config, arrays = self.get_state()
        return {"config": config, "arrays": arrays}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # the arrays unpickled are the model's own: taken as they are (one copy in
        # memory), copied where read-only (protocol 5 buffers that are)
        self.set_state(state["config"], state["arrays"], copy=False)

    def __copy__(self) -> Sequential:
        """copy.copy: an independent model, as copy.deepcopy (the state of __getstate__
        holds this model's own arrays, which __setstate__ would take)."""
        return type(self).from_state(*self.get_state())

    def save(self, path: PathLike) -> None:
        """Write the model (weights, loss, optimizer state, shuffling) to the .npz
        file `path`, atomically (nncore.io.write); nncore.load(path) reads it back.
        Format: nncore.schema."""
        config, arrays = self.get_state()
        io.write(path, config, arrays)

    @classmethod
    def load(cls, path: PathLike) -> Sequential:
        """The model saved at `path`: same dtype, layers, weights (bitwise), loss,
        optimizer with its state and the shuffling generator. Raises
        nncore.io.ModelFileError naming what is wrong, OSError when unreadable."""
        config, arrays = io.read(path)
        try:
            return cls.from_state(config, arrays, copy=False)
        except schema.ModelFileError as e:
            e.args = (f"{os.fsdecode(path)}: {e.args[0]}",)
            raise

    # ---- checks ------------------------------------------------------------

    def _inputs(self, X: npt.ArrayLike, name: str = "X", n_threads: int | None = None,
                finite: bool = True) -> np.ndarray:
        """X as a C-contiguous (n, n_inputs) array of the model's dtype, all finite
        (checked on n_threads threads; None: get_num_threads(); finite=False: left to
        the caller)."""
        return _checks.model_inputs(X, name, self.n_inputs, self.dtype,
                                    lambda a: not finite or F.all_finite(a, n_threads=n_threads))

    def _loss(self, loss: str | Loss | None) -> Loss:
        # (None, with no loss used before: get refuses it, naming the losses)
        loss = losses_mod.get(loss if loss is not None else self.loss)  # type: ignore[arg-type]
        last = self.layers[-1].activation
        if loss.name != "mse" and last != "identity":
            raise ValueError(f"{loss.name} takes the last layer's raw outputs (logits): make "
                             f"its activation 'identity', not {last!r}")
        return loss

    def _sample_weight(self, sample_weight: npt.ArrayLike | None, n: int,
                       nonzero: bool = True) -> np.ndarray | None:
        if sample_weight is None:
            return None
        return _checks.sample_weights(sample_weight, "sample_weight", n, nonzero)

    def _optimizer(self, optimizer: Optimizer | None) -> Optimizer:
        if optimizer is None:
            optimizer = self.optimizer if self.optimizer is not None else optim_mod.SGD(lr=0.01)
        if isinstance(optimizer, str):
            raise TypeError(f"optimizer must be an nncore.optim optimizer object, e.g. "
                            f"nncore.optim.Adam(lr=0.001), not the name {optimizer!r}")
        if not isinstance(optimizer, optim_mod.Optimizer):
            raise TypeError(f"optimizer must be an nncore.optim optimizer (one of "
                            f"{', '.join(optim_mod.OPTIMIZERS)}), got {type(optimizer).__name__}")
        return optimizer

    def _batch(self, X: npt.ArrayLike, y: npt.ArrayLike, loss: Loss,
               sample_weight: npt.ArrayLike | None,
               ) -> tuple[np.ndarray, tuple[np.ndarray | None, np.ndarray | None],
                          np.ndarray | None]:
        X = self._inputs(X)
        y = loss.targets(y, X.shape[0], self.n_outputs, self.dtype)
        w = self._sample_weight(sample_weight, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("X is an empty batch")
        return X, (None, y) if y.ndim == 1 else (y, None), w

    # ---- forward and backward, layer by layer -------------------------------

    def _forward(self, x: np.ndarray, given: npt.ArrayLike | None = None) -> np.ndarray:
        """a_L for x; given: the caller's X, whose x the first layer checks for NaN and
        inf as its product reads it (refused as _inputs would refuse it)."""
        if given is not None:
            x = self._checked(self.layers[0].forward, given, x, backend=self.backend)
        for layer in self.layers[1 if given is not None else 0:]:
            x = layer.forward(x, backend=self.backend)
        return x

    def _checked(self, run: Callable[..., np.ndarray], given: npt.ArrayLike, x: np.ndarray,
                 *args: Any, **kwargs: Any) -> np.ndarray:
        """run(x, *args, finite_x=True, **kwargs), its NaN/inf refusal worded as
        _inputs(given) words it (X, or X beyond the dtype's range)."""
        try:
            return run(x, *args, finite_x=True, **kwargs)
        except ValueError:
            self._inputs(given)
            raise

    def forward(self, X: npt.ArrayLike) -> np.ndarray:
        """The network's output a_L (n, n_outputs) for X (n, n_inputs), a new array; the
        layers keep their activations for backward (the layer API: one thread at a
        time, like training; predict/output are the thread-safe way to infer)."""
        given, X = X, self._inputs(X, finite=False)   # (checked by the first layer)
        with self._usage.training("forward", reentrant=True):
            return self._forward(X, given).copy()

    def backward(self, grad_output: npt.ArrayLike) -> np.ndarray:
        """Backpropagate dL/d output (n, n_outputs) of the last forward: fills each
        layer's grad_weight, grad_bias and returns dL/dX (n, n_inputs)."""
        if self.layers[-1]._x is None:
            raise RuntimeError("backward called before forward")
        n = self.layers[0]._x.shape[0]                 # type: ignore[union-attr]  # forward
        g = _checks.float_array(grad_output, "grad_output", 2)
        _checks.shape(g, "grad_output", (n, self.n_outputs))
        g = np.ascontiguousarray(g, dtype=self.dtype)
        with self._usage.training("backward", reentrant=True):
            for layer in reversed(self.layers):
                g = layer.backward(g, need_grad_x=True, backend=self.backend)
            return g.copy()

    def _penalty(self) -> float:
        if not self.l2:
            return 0.0
        return sum(F.l2_penalty(layer.weight,   # type: ignore[arg-type,misc]  # built layers
                                self.l2, backend=self.backend) for layer in self.layers)

    # ---- the training plan ------------------------------------------------

    def _plan(self, loss: Loss, optimizer: Optimizer, batch_max: int) -> TrainPlan:
        """The training plan for this loss, optimizer and at least batch_max rows,
        rebuilt only when one of them (or an array it points into) changed. (The
        plan holds every array of the key, so no id in it can be reused meanwhile.)"""
        params = self.parameters()
        key = self._plan_key(loss, optimizer, params)
        cached = self._plan_cache
        if cached is not None and cached[0] == key and cached[1].batch_max >= batch_max:
            return cached[1]
        state1, state2 = optimizer.plan_state(params)      # (made here when missing)
        key = self._plan_key(loss, optimizer, params)
        specs, i = [], 0
        for layer in self.layers:
            # z is a where f' follows from a (one batch of activations per layer);
            # grad_z is formed in place of dL/da
            z, a, _, gx = layer._workspace(batch_max)
            b = i + 1 if layer.use_bias else None
            specs.append(dict(
                n_in=layer.n_in, n_out=layer.n_out, activation=layer.activation,
                slope=layer.slope, weight=layer.weight, bias=layer.bias,
                grad_weight=layer.grad_weight, grad_bias=layer.grad_bias,
                z=z, a=a, grad_z=None, grad_x=gx,
                state1=(state1[i], state1[b] if b else None) if state1 else None,
                state2=(state2[i], state2[b] if b else None) if state2 else None))
            i += len(layer.parameters())
        # a Loss or Optimizer class without a kernel name (None) is refused there
        plan = F.train_plan(specs, loss=loss.name,       # type: ignore[arg-type]
                            batch_max=batch_max,
                            optimizer=optimizer.kernel,  # type: ignore[arg-type]
                            hyper=optimizer.hyper(),
                            weight_decay=optimizer.weight_decay, l2=self.l2,
                            backend=self.backend)
        self._plan_cache = (key, plan)
        return plan

    def _plan_key(self, loss: Loss, optimizer: Optimizer, params: list[np.ndarray]) -> tuple:
        """What a plan for (loss, optimizer) bakes in: names, hyperparameters and the
        ids of the parameters and of the optimizer's state arrays."""
        state = optimizer.state
        return (loss.name, id(optimizer), optimizer.plan_key(), self.l2, self.backend,
                tuple(map(id, params)),
                tuple(tuple(map(id, state.get(name, ()))) for name in optimizer.active_states()))

    # ---- one step, whole or in phases ---------------------------------------

    def train_step(self, X: npt.ArrayLike, y: npt.ArrayLike, loss: str | Loss | None = None,
                   optimizer: Optimizer | None = None, *,
                   sample_weight: npt.ArrayLike | None = None) -> float:
        """One gradient step on the batch (X, y); returns the batch loss (before the
        update). Bitwise compute_gradients then apply_gradients. Raises
        TrainingDiverged, leaving the weights and the optimizer state unchanged, when
        the loss or a gradient is NaN or inf, or the update would make a weight or a
        state NaN or inf."""
        loss = self._loss(loss)
        optimizer = self._optimizer(optimizer)
        X, (t, labels), w = self._batch(X, y, loss, sample_weight)
        with self._usage.training("train_step"):
            plan = self._plan(loss, optimizer, X.shape[0])
            status, value, _, step = plan.step(X, t, labels, w, optimizer.current_lr(),
                                               optimizer.t, get_num_threads())
        optimizer.advance(steps=step - optimizer.t)
        if status in (1, 2):
            raise TrainingDiverged(f"{training.divergence(value)}: the weights are unchanged")
        self.loss, self.optimizer = loss, optimizer
        return value

    def compute_gradients(self, X: npt.ArrayLike, y: npt.ArrayLike,
                          loss: str | Loss | None = None, *,
                          sample_weight: npt.ArrayLike | None = None) -> float:
        """The gradient phase of a step on the batch (X, y): forward, loss, backward,
        dL/dW += l2 W, into grad_weight and grad_bias of each layer (see gradients());
        weights and optimizer untouched. Returns the loss L = sum_i s_i l_i + 1/2 l2
        sum ||W||^2 (s_i = 1/n or w_i / sum w). Change the gradients if you like (clip
        them, sum them across processes), then apply_gradients. Raises
        TrainingDiverged when the loss is NaN or inf (the gradients are then not
        formed) and ValueError when every sample weight is 0."""
        loss = self._loss(loss)
        optimizer = self._optimizer(None)
        X, (t, labels), w = self._batch(X, y, loss, sample_weight)
        with self._usage.training("compute_gradients"):
            plan = self._plan(loss, optimizer, X.shape[0])
            status, value, _ = plan.gradients(X, t, labels, w, get_num_threads())
        if status == 3:
            raise ValueError("sample_weight is zero everywhere in this batch")
        if status == 1:
            raise TrainingDiverged(f"{training.divergence(value)}: no gradients formed")
        self.loss = loss
        return value

    def apply_gradients(self, optimizer: Optimizer | None = None) -> None:
        """The apply phase: the optimizer's update of the gradients the layers hold
        now (from compute_gradients, maybe changed since), at its current learning
        rate, all or nothing. Raises TrainingDiverged, changing nothing, when a
        gradient is NaN or inf or the update would make a weight or a state NaN or inf."""
        optimizer = self._optimizer(optimizer)
        loss = self._loss(None) if self.loss is not None else losses_mod.get("mse")
        with self._usage.training("apply_gradients"):
            plan = self._plan(loss, optimizer, 1)
            status, step = plan.apply(optimizer.current_lr(), optimizer.t, get_num_threads())
        optimizer.advance(steps=step - optimizer.t)
        if status != 0:
            raise TrainingDiverged("a gradient or the update would be NaN or inf: the "
                                   "weights are unchanged")
        self.optimizer = optimizer

    # ---- training --------------------------------------------------------

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: str | Loss | None = None,
            optimizer: Optimizer | None = None, epochs: int = 1, batch_size: int | None = 32,
            validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
            validation_split: float = 0.0,
            callbacks: list[Callback] | tuple[Callback, ...] | None = (), verbose: int = 0,
            shuffle: bool = True, sample_weight: npt.ArrayLike | None = None,
            grad_shards: int = 1) -> History:
        """Train by minibatch gradient descent; returns a History.

        Parameters
        ----------
        X : array (n, n_inputs); y : targets for `loss` (class labels (n,) for
            softmax_cross_entropy and hinge; (n, n_outputs) floats for mse and
            binary_cross_entropy)
        loss : name or nncore.losses.Loss (default: the last one used)
        optimizer : nncore.optim optimizer (default: the last one used, else SGD(lr=0.01));
            its state carries over between calls, so training can resume
        epochs : int >= 1
        batch_size : int >= 1, or None for the whole set (batch gradient descent);
            1 is stochastic gradient descent
        validation_data : (X_val, y_val), or validation_split in [0, 1): the last
            fraction of (X, y), taken before shuffling
        callbacks : list of nncore.callbacks.Callback, or None
        verbose : 0 silent, 1 progress bar on a terminal (else a line per epoch), 2 a line per epoch
        shuffle : reshuffle every epoch with the model's seed
        sample_weight : array (n,) >= 0; the loss becomes sum w_i l_i / sum w_i per batch
        grad_shards : int >= 1. 1: the plan's schedule (above). G > 1: the sharded
            schedule of nncore.distributed, in this process -- X cut into G contiguous
            shards (numpy.array_split), each shuffled on its own and read in batches
            of batch_size / G rows (batch_size must be a multiple of G), the shards'
            gradients summed in a fixed pairwise tree; nncore.distributed.fit with
            the same G gives bitwise these weights and this History at any number of
            processes dividing G. One Python call per step (slower than G = 1).

        A NaN or inf loss, or an update that makes a weight NaN or inf, stops training
        with TrainingDiverged (or quietly with callbacks.TerminateOnNaN, setting
        history.stopped_early); the model keeps its last finite weights. Ctrl-C stops
        after the current step, ends the epoch there and returns the History with
        history.interrupted set; a second Ctrl-C raises KeyboardInterrupt.
        """
        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                            batch_size=batch_size, validation_data=validation_data,
                            validation_split=validation_split, callbacks=callbacks,
                            verbose=verbose, shuffle=shuffle, sample_weight=sample_weight,
                            grad_shards=grad_shards)

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, *,
                    loss: str | Loss | None = None, optimizer: Optimizer | None = None,
                    batch_size: int | None = 32,
                    sample_weight: npt.ArrayLike | None = None) -> History:
        """One epoch over (X, y), continuing from the current weights and optimizer
        state (for data that arrives in chunks). Returns the History of that epoch."""
        return self.fit(X, y, loss=loss, optimizer=optimizer, epochs=1,
                        batch_size=batch_size, sample_weight=sample_weight)

    # ---- using a trained model -------------------------------------------

    def output(self, X: npt.ArrayLike, batch_size: int = 4096) -> np.ndarray:
        """The network's raw outputs a_L (n, n_outputs) for X, computed in blocks of
        batch_size rows in buffers of the calling thread: any number of threads may
        predict with one model at once (not while it trains: RuntimeError)."""
        given, X = X, self._inputs(X, finite=False)   # (checked by the first layer)
        batch_size = positive_int(batch_size, "batch_size")
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        with self._usage.inference():
            for start in range(0, X.shape[0], batch_size):
                out[start:start + batch_size] = self._infer(X[start:start + batch_size],
                                                            given)
        return out

    def _infer(self, x: np.ndarray, given: npt.ArrayLike | None = None) -> np.ndarray:
        """a_L of a block x, in this thread's buffers (grown, never shrunk); given: as
        in _forward."""
        rows, local = x.shape[0], self._local
        if getattr(local, "rows", 0) < rows:
            local.buffers = [layer.buffers(rows) for layer in self.layers]
            local.rows = rows
        for i, (layer, (z, a)) in enumerate(zip(self.layers, local.buffers)):
            if i == 0 and given is not None:
                x = self._checked(layer.infer, given, x, z[:rows], a[:rows],
                                  backend=self.backend)
            else:
                x = layer.infer(x, z[:rows], a[:rows], backend=self.backend)
        return x

    def _trained_loss(self) -> Loss:
        if self.loss is None:
            raise RuntimeError("the model does not know its loss yet: fit it first "
                               "(or set model.loss = 'softmax_cross_entropy', ...)")
        return losses_mod.get(self.loss)

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        """Class labels for classification losses, raw outputs for mse."""
        return self._trained_loss().predict(self.output(X))

    def predict_proba(self, X: npt.ArrayLike) -> np.ndarray:
        """Class probabilities: softmax of the logits (softmax_cross_entropy) or
        sigmoid (binary_cross_entropy)."""
        return self._trained_loss().predict_proba(self.output(X))

    def _evaluate(self, X: npt.ArrayLike, y: np.ndarray, loss: Loss,
                  sample_weight: np.ndarray | None = None) -> dict[str, float]:
        out = self.output(X)
        value, _ = loss(out, y, sample_weight=sample_weight, backend=self.backend)
        result = {"loss": value + self._penalty()}
        if loss.classification:
            result["accuracy"] = _accuracy(loss, out, y)
        return result

    def evaluate(self, X: npt.ArrayLike, y: npt.ArrayLike, *, loss: str | Loss | None = None,
                 sample_weight: npt.ArrayLike | None = None) -> dict[str, float]:
        """{'loss': ..., 'accuracy': ...} (accuracy for classification losses)."""
        loss = self._loss(loss) if loss is not None else self._trained_loss()
        X = self._inputs(X)
        if X.shape[0] == 0:
            raise ValueError("X is an empty batch: evaluate needs at least one sample")
        y = loss.targets(y, X.shape[0], self.n_outputs, self.dtype)
        return self._evaluate(X, y, loss, self._sample_weight(sample_weight, X.shape[0]))


load = Sequential.load


def _accuracy(loss: Loss, out: np.ndarray, y: np.ndarray) -> float:
    pred = loss.predict(out)
    if pred.ndim == 1 and y.ndim == 2:
        y = y[:, 0]
    return int(np.count_nonzero(pred == y)) / pred.size


def MLP(sizes: Iterable[int], activation: str = "relu", output_activation: str = "identity",
        *, init: str | None = None, seed: int | None = None, dtype: npt.DTypeLike = "float32",
        l2: float = 0.0, backend: str = "compiled") -> Sequential:
    """Sequential Dense layers of the given sizes, e.g. MLP([784, 16, 16, 10]):
    hidden layers use `activation`, the last one `output_activation` (linear)."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least the inputs and outputs, got {sizes}")
    _checks.choice(activation, "activation", F.ACTIVATIONS)       # even with no hidden layer
    layers = [Dense(sizes[i], sizes[i + 1],
                    activation if i < len(sizes) - 2 else output_activation, init=init)
              for i in range(len(sizes) - 1)]
    return Sequential(layers, seed=seed, dtype=dtype, l2=l2, backend=backend)
