"""The schema of a saved model: what a model file's config and arrays must be.

Format "nncore-model", version 1: an uncompressed NumPy .npz archive (a zip of
.npy files, as np.savez writes it) that holds these arrays and nothing else:

    config                 0-d unicode array (dtype <U...): a JSON object, below
    layers.<i>.weight      (n_out, n_in) in the model's dtype, i = 0, 1, ...
    layers.<i>.bias        (n_out,), only for layers with a bias
    optimizer.<s>.<j>      optimizer state s (SGD with momentum: velocity;
                           Adam: m and v; RMSprop: square_avg and, with
                           momentum, momentum_buffer) of parameter j of
                           model.parameters(), in the model's dtype; each s
                           all there or not at all (left out before the first step)

The JSON object:

    format          "nncore-model"
    format_version  1; a file with a newer version is refused
    nncore_version  the nncore that wrote the file (for information only)
    dtype           "float32" or "float64"
    l2, backend, seed   Sequential's arguments
    layers          [Dense.config(), ...]: n_in, n_out, activation, init, bias, slope
    loss            a name in nncore.losses.LOSSES, or null before the first fit
    optimizer       Optimizer.config() (type, lr, weight_decay, the class's
                    hyper-parameters, schedule, epoch, step count t), or null
                    before the first fit
    shuffle_rng     bit_generator.state of the PCG64 generator that shuffles each
                    epoch, so a resumed fit shuffles as an uninterrupted one would

Training history and the layers' workspaces are not saved. parse(config) and
check_arrays(spec, arrays) raise ModelFileError, a ValueError, naming what is
wrong; nothing here knows the model class (nncore.model builds it from a spec).
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Callable, Collection, Mapping, NoReturn, TypeVar

import numpy as np

from nncore import functional as F, losses as losses_mod, optim as optim_mod
from nncore._checks import BACKENDS
from nncore._version import __version__
from nncore.init import INITIALIZERS
from nncore.layers import Dense

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "check_arrays", "check_names",
           "check_layout", "json_ready", "parse", "wrapped"]

FORMAT = "nncore-model"
FORMAT_VERSION = 1
DTYPES: dict[str, np.dtype] = {"float32": np.dtype(np.float32),
                               "float64": np.dtype(np.float64)}

_T = TypeVar("_T")


class ModelFileError(ValueError):
    """A model file (or pickled state) that cannot be loaded; the message says why."""


def json_ready(config: dict[str, Any]) -> dict[str, Any]:
    """config in plain JSON types only (lists for tuples, ints for NumPy integers), so
    a pickled config equals the one a file holds; ValueError for what JSON cannot hold."""
    return json.loads(json.dumps(config, default=_json_scalar, allow_nan=False))


def _json_scalar(value: object) -> bool | int | float:
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be written to a model file")


def wrapped(fn: Callable[..., _T], where: str, *args: Any) -> _T:
    """fn(*args), its TypeError/ValueError/... turned into a ModelFileError."""
    try:
        return fn(*args)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ModelFileError(f"{where}: {e}") from e


# ---- checking a config ------------------------------------------------------

def _jtype(value):
    """The JSON name of value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__)


def _fail(where: str, want: str, value: object) -> NoReturn:
    raise ModelFileError(f"{where} must be {want}, got {_jtype(value)} {value!r}"[:300])


def _int(minimum=0, maximum=None):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f"an int >= {minimum}" if maximum is None else \
                f"an int in [{minimum}, {maximum}]"
            _fail(where, bound, value)
        return value
    return check


def _real(nonnegative=False):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or (nonnegative and value < 0):
            _fail(where, "a finite number" + (" >= 0" if nonnegative else ""), value)
        return float(value)
    return check


def _bool(value, where):
    if not isinstance(value, bool):
        _fail(where, "true or false", value)
    return value


def _str(value, where):
    if not isinstance(value, str):
        _fail(where, "a string", value)
    return value


def _choice(options):
    def check(value, where):
        if not isinstance(value, str) or value not in options:
            _fail(where, f"one of {', '.join(map(repr, options))}", value)
        return value
    return check


def _nullable(checker):
    def check(value, where):
        return None if value is None else checker(value, where)
    return check


def _list(value, where):
    if not isinstance(value, list):
        _fail(where, "an array", value)
    return value


def _object(value, where, fields, optional=()):
    """value, a JSON object with exactly `fields` (and maybe `optional`), each
    checked by its checker: a new dict of the checked values."""
    if not isinstance(value, dict):
        _fail(where, "an object", value)
    missing = [k for k in fields if k not in value]
    if missing:
        raise ModelFileError(f"{where} lacks {', '.join(map(repr, missing))}")
    unknown = [k for k in value if k not in fields and k not in optional]
    if unknown:
        raise ModelFileError(f"{where} has unknown keys {', '.join(map(repr, unknown))}"[:300])
    checkers = dict(fields, **dict(optional))
    return {k: checkers[k](v, f"{where}.{k}") for k, v in value.items()}


_LAYER = dict(n_in=_int(1), n_out=_int(1), activation=_choice(F.ACTIVATIONS),
              init=_choice(INITIALIZERS), bias=_bool, slope=_real())

_SCHEDULES = dict(StepDecay=dict(step_size=_int(1), gamma=_real()),
                  ExponentialDecay=dict(gamma=_real()),
                  InverseScaling=dict(power_t=_real()))


def _pair(value, where):
    if not isinstance(value, list) or len(value) != 2:
        _fail(where, "an array of two numbers", value)
    return [_real()(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _kind(value, where, kinds):
    """The "type" of a JSON object, one of kinds."""
    if not isinstance(value, dict):
        _fail(where, "an object", value)
    return _choice(tuple(kinds))(value.get("type"), f"{where}.type")


def _schedule(value, where):
    kind = _kind(value, where, _SCHEDULES)
    return _object(value, where, dict(type=_str, **_SCHEDULES[kind]))


_HYPER = {"real": _real(), "bool": _bool, "pair": _pair}


def _optimizer(value, where):
    """An optimizer's config: its class (nncore.optim.OPTIMIZERS) names the fields
    beyond lr, weight_decay, epoch and t, and their JSON types."""
    kind = _kind(value, where, optim_mod.OPTIMIZERS)
    cls = optim_mod.OPTIMIZERS[kind]
    fields = dict(type=_str, lr=_real(), weight_decay=_real(), epoch=_int(),
                  **{k: _HYPER[t] for k, t in cls.hyper_types.items()})
    return _object(value, where, fields,
                   optional=dict(schedule=_schedule, t=_int(0, optim_mod.MAX_STEPS)))


_RNG = dict(bit_generator=_choice(("PCG64",)),
            state=lambda v, where: _object(v, where, dict(state=_int(0, 2**128 - 1),
                                                          inc=_int(0, 2**128 - 1))),
            has_uint32=_int(0, 1), uinteger=_int(0, 2**32 - 1))

_CONFIG = dict(format=_str, format_version=_int(1), nncore_version=_str,
               dtype=_choice(tuple(DTYPES)), l2=_real(nonnegative=True),
               backend=_choice(BACKENDS), seed=_nullable(_int()), layers=_list,
               loss=_nullable(_choice(tuple(losses_mod.LOSSES))),
               optimizer=_nullable(_optimizer),
               shuffle_rng=lambda v, where: _object(v, where, _RNG))


def parse(config: object) -> dict[str, Any]:
    """The checked contents of a config: dtype, l2, backend, seed, loss (a
    name), shuffle_rng (a state dict), and new Dense layers (unbuilt) and
    optimizer (without state). Raises ModelFileError."""
    if not isinstance(config, dict):
        _fail("config", "a JSON object", config)
    if config.get("format") != FORMAT:
        raise ModelFileError(f"not an nncore model file: config.format is "
                             f"{config.get('format')!r}, not {FORMAT!r}"[:300])
    version = _int(1)(config.get("format_version"), "config.format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"the file has format version {version}, newer than this "
                             f"nncore {__version__} reads ({FORMAT_VERSION}): upgrade nncore")
    spec = _object(config, "config", _CONFIG)
    spec["dtype"] = DTYPES[spec["dtype"]]

    if not spec["layers"]:
        raise ModelFileError("config.layers is empty: a model has at least one layer")
    layers: list[Dense] = []
    for i, cfg in enumerate(spec["layers"]):
        where = f"config.layers[{i}]"
        layer = wrapped(lambda c: Dense(**c), where, _object(cfg, where, _LAYER))
        if layers and layer.n_in != layers[-1].n_out:
            raise ModelFileError(f"{where} takes {layer.n_in} inputs but "
                                 f"config.layers[{i - 1}] gives {layers[-1].n_out} outputs")
        layers.append(layer)
    spec["layers"] = layers
    last = layers[-1].activation
    if spec["loss"] not in (None, "mse") and last != "identity":
        raise ModelFileError(f"config.loss {spec['loss']!r} takes the last layer's raw "
                             f"outputs, but config.layers[{len(layers) - 1}].activation is "
                             f"{last!r}, not 'identity'")
    if spec["optimizer"] is not None:
        spec["optimizer"] = wrapped(optim_mod.from_config, "config.optimizer",
                                     spec["optimizer"])
    return spec


# ---- checking the arrays ----------------------------------------------------

def _expected_arrays(spec: Mapping[str, Any],
                     ) -> tuple[dict[str, tuple[int, ...]], list[tuple[str, list[str]]]]:
    """{name: shape} of the arrays the config asks for, and the optimizer's
    state groups [(state name, [array names])], each all there or not at all."""
    shapes: dict[str, tuple[int, ...]] = {}
    params: list[tuple[int, ...]] = []
    for i, layer in enumerate(spec["layers"]):
        shapes[f"layers.{i}.weight"] = (layer.n_out, layer.n_in)
        params.append((layer.n_out, layer.n_in))
        if layer.use_bias:
            shapes[f"layers.{i}.bias"] = (layer.n_out,)
            params.append((layer.n_out,))
    groups = []
    if spec["optimizer"] is not None:
        for name in spec["optimizer"].state_names:
            keys = [f"optimizer.{name}.{j}" for j in range(len(params))]
            shapes.update(zip(keys, params))
            groups.append((name, keys))
    return shapes, groups


def check_names(spec: Mapping[str, Any], names: Collection[str]) -> dict[str, tuple[int, ...]]:
    """The array names (config left out) are the ones the config asks for."""
    shapes, groups = _expected_arrays(spec)
    unknown = sorted(set(names) - set(shapes))
    if unknown:
        raise ModelFileError(f"unexpected arrays {', '.join(map(repr, unknown))}"[:300]
                             + " (not part of the model the config describes)")
    optional = set()
    for name, keys in groups:
        there = [k for k in keys if k in names]
        if there and len(there) < len(keys):
            missing = [k for k in keys if k not in names]
            raise ModelFileError(f"optimizer state {name!r} is incomplete: "
                                 f"{', '.join(missing)} missing"[:300])
        optional.update(keys)
    missing = [k for k in shapes if k not in names and k not in optional]
    if missing:
        raise ModelFileError(f"arrays {', '.join(map(repr, missing))} are missing"[:300])
    return shapes


def check_layout(name: str, shape: tuple[int, ...], dtype: np.dtype,
                 expected_shape: tuple[int, ...], expected_dtype: np.dtype) -> None:
    if dtype != expected_dtype:
        raise ModelFileError(f"{name} has dtype {dtype}, expected the model's "
                             f"{expected_dtype.name}")
    if tuple(shape) != expected_shape:
        raise ModelFileError(f"{name} has shape {tuple(shape)}, but the architecture "
                             f"needs {expected_shape}")


def check_arrays(spec: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> None:
    if not isinstance(arrays, dict):
        _fail("arrays", "a dict of arrays", arrays)
    shapes = check_names(spec, arrays)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise ModelFileError(f"{name} must be a NumPy array, got {type(a).__name__}")
        check_layout(name, a.shape, a.dtype, shapes[name], spec["dtype"])
        if not F.all_finite(a):                 # one pass, no temporary
            raise ModelFileError(f"{name} holds NaN or inf")
