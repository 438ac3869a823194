"""Saving and loading models: one .npz file, read back without pickle.

Format "nncore-model", version 1: an uncompressed NumPy .npz archive (a zip of
.npy files, as np.savez writes it) that holds these arrays and nothing else:

    config                 0-d unicode array (dtype <U...): a JSON object, below
    layers.<i>.weight      (n_out, n_in) in the model's dtype, i = 0, 1, ...
    layers.<i>.bias        (n_out,), only for layers with a bias
    optimizer.<s>.<j>      optimizer state s (SGD with momentum: velocity;
                           Adam: m and v) of parameter j of model.parameters(),
                           in the model's dtype; each s all there or not at all
                           (left out before the first step)

The JSON object:

    format          "nncore-model"
    format_version  1; a file with a newer version is refused
    nncore_version  the nncore that wrote the file (for information only)
    dtype           "float32" or "float64"
    l2, backend, seed   Sequential's arguments
    layers          [Dense.config(), ...]: n_in, n_out, activation, init, bias, slope
    loss            a name in nncore.losses.LOSSES, or null before the first fit
    optimizer       Optimizer.config() (type, hyper-parameters, schedule, epoch,
                    Adam's t), or null before the first fit
    shuffle_rng     bit_generator.state of the PCG64 generator that shuffles each
                    epoch, so a resumed fit shuffles as an uninterrupted one would

Training history and the layers' workspaces are not saved.

save(model, path) writes exactly `path`: no ".npz" is appended to a name without
it (np.savez would append one), so load(path) reads back what save(path) wrote.
The write is atomic: the archive goes to a temporary file in the same folder,
is flushed to disk, then renamed onto `path`; on any error the temporary file
is removed and an existing file at `path` is left untouched. A new file gets
the usual permissions (0o666 less the umask); an overwritten one keeps its own.

load(path) uses np.load(allow_pickle=False) and never unpickles. It checks the
whole file before building anything (the config's keys and types, each array's
name, shape, dtype and finiteness, against the architecture the config
describes, reading each .npy header before its data) and raises
ModelFileError, a ValueError, naming what is wrong. Weights are taken from the
file, never drawn again from the seed.

Pickling a Sequential (pickle, copy, multiprocessing, joblib) goes through the
same state: get_state(model) -> (config, arrays) and set_state(model, config, arrays).
"""
import contextlib
import json
import math
import numbers
import os
import stat
import tempfile

import numpy as np

from nncore import functional as F, losses as losses_mod, optim as optim_mod
from nncore._checks import BACKENDS
from nncore._version import __version__
from nncore.init import INITIALIZERS
from nncore.layers import Dense
from nncore.model import DTYPES, Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "from_state", "get_state", "load",
           "save", "set_state"]

FORMAT = "nncore-model"
FORMAT_VERSION = 1
MAX_CONFIG_CHARS = 1 << 24        # a config is a few hundred characters per layer
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")    # a zip with members, an empty zip


class ModelFileError(ValueError):
    """A model file (or pickled state) that cannot be loaded; the message says why."""


# ---- model -> (config, arrays) ----------------------------------------------

def get_state(model):
    """(config, arrays) of a Sequential: what save writes and pickle carries.

    config is the JSON-ready dict of the module docstring, arrays a dict
    {name: ndarray} of the model's own arrays (not copies). Raises ValueError
    for a model that could not be loaded back (a custom loss or schedule,
    non-finite weights, ...).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an nncore Sequential, got {type(model).__name__}")
    config = dict(
        format=FORMAT, format_version=FORMAT_VERSION, nncore_version=__version__,
        dtype=model.dtype.name, l2=model.l2, backend=model.backend, seed=model.seed,
        layers=[layer.config() for layer in model.layers],
        loss=_loss_name(model.loss),
        optimizer=None if model.optimizer is None else model.optimizer.config(),
        shuffle_rng=model._shuffle_rng.bit_generator.state)
    # plain JSON types only (lists for tuples, ints for numpy integers), so a
    # pickled config equals the one a file holds
    config = json.loads(json.dumps(config, default=_json_scalar, allow_nan=False))

    arrays = {}
    for i, layer in enumerate(model.layers):
        arrays[f"layers.{i}.weight"] = layer.weight
        if layer.use_bias:
            arrays[f"layers.{i}.bias"] = layer.bias
    if model.optimizer is not None:
        arrays.update(_optimizer_arrays(model.optimizer, model.parameters()))

    try:                          # never write what load would refuse
        _check_arrays(_parse(config), arrays)
    except ModelFileError as e:
        raise ValueError(f"cannot save the model: {e}") from None
    return config, arrays


def _loss_name(loss):
    if loss is None:
        return None
    if isinstance(loss, str):
        return losses_mod.get(loss).name
    if type(loss) is not losses_mod.LOSSES.get(getattr(loss, "name", None)):
        raise ValueError(f"cannot save the model: its loss {loss!r} is not one of "
                         f"nncore.losses.LOSSES ({', '.join(losses_mod.LOSSES)})")
    return loss.name


def _optimizer_arrays(optimizer, params):
    """{'optimizer.<s>.<j>': array} for each state s that matches params. A state
    that does not (the optimizer last stepped another model) is left out: the
    next step would restart it at zero, as loading without it does."""
    saved = optimizer.state_arrays()
    arrays = {}
    for name in optimizer.state_names:
        group = [saved.get(f"{name}.{j}") for j in range(len(params))]
        if len(optimizer.state.get(name, ())) == len(params) and all(
                a is not None and a.shape == p.shape and a.dtype == p.dtype
                for a, p in zip(group, params)):
            arrays.update((f"optimizer.{name}.{j}", a) for j, a in enumerate(group))
    return arrays


def _json_scalar(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be written to a model file")


# ---- (config, arrays) -> model ----------------------------------------------

def set_state(model, config, arrays):
    """Fill `model`, a bare Sequential (from Sequential.__new__, as unpickling
    makes), from (config, arrays) as get_state returns them. Everything is
    checked before the model is touched; raises ModelFileError."""
    spec = _parse(config)
    _check_arrays(spec, arrays)
    dtype = spec["dtype"]
    layers = spec["layers"]
    for i, layer in enumerate(layers):         # what Dense.build sets, from the arrays
        layer.weight = np.array(arrays[f"layers.{i}.weight"], dtype, order="C")
        layer.bias = (np.array(arrays[f"layers.{i}.bias"], dtype, order="C")
                      if layer.use_bias else None)
        layer.grad_weight = np.zeros_like(layer.weight)
        layer.grad_bias = np.zeros(layer.n_out, dtype)
    optimizer = spec["optimizer"]
    if optimizer is not None:
        params = [p for layer in layers for p in layer.parameters()]
        state = {key[len("optimizer."):]: a for key, a in arrays.items()
                 if key.startswith("optimizer.")}
        _wrapped(optimizer.load_state_arrays, "optimizer state", state, params)
    rng = np.random.Generator(np.random.PCG64(0))
    _wrapped(setattr, "shuffle_rng", rng.bit_generator, "state", spec["shuffle_rng"])

    # nothing below can fail: the model is filled completely or not at all
    model.layers = layers
    model.dtype = dtype
    model.l2 = spec["l2"]
    model.backend = spec["backend"]
    model.seed = spec["seed"]
    model._shuffle_rng = rng
    model.loss = None if spec["loss"] is None else losses_mod.get(spec["loss"])
    model.optimizer = optimizer
    model._init_runtime()
    return model


def from_state(config, arrays):
    """A new Sequential from (config, arrays); see set_state."""
    return set_state(Sequential.__new__(Sequential), config, arrays)


def _wrapped(fn, where, *args):
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


def _fail(where, want, value):
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


_OPTIMIZERS = dict(
    SGD=dict(momentum=_real(), nesterov=_bool),
    Adam=dict(betas=_pair, eps=_real(), t=_int()))


def _optimizer(value, where):
    kind = _kind(value, where, _OPTIMIZERS)
    fields = dict(type=_str, lr=_real(), weight_decay=_real(), epoch=_int(),
                  **_OPTIMIZERS[kind])
    return _object(value, where, fields, optional=dict(schedule=_schedule))


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


def _parse(config):
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
    layers = []
    for i, cfg in enumerate(spec["layers"]):
        where = f"config.layers[{i}]"
        layer = _wrapped(lambda c: Dense(**c), where, _object(cfg, where, _LAYER))
        if layers and layer.n_in != layers[-1].n_out:
            raise ModelFileError(f"{where} takes {layer.n_in} inputs but "
                                 f"config.layers[{i - 1}] gives {layers[-1].n_out} outputs")
        layers.append(layer)
    spec["layers"] = layers
    if spec["optimizer"] is not None:
        spec["optimizer"] = _wrapped(optim_mod.from_config, "config.optimizer",
                                     spec["optimizer"])
    return spec


# ---- checking the arrays ----------------------------------------------------

def _expected_arrays(spec):
    """{name: shape} of the arrays the config asks for, and the optimizer's
    state groups [(state name, [array names])], each all there or not at all."""
    shapes, params = {}, []
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


def _check_names(spec, names):
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


def _check_layout(name, shape, dtype, expected_shape, expected_dtype):
    if dtype != expected_dtype:
        raise ModelFileError(f"{name} has dtype {dtype}, expected the model's "
                             f"{expected_dtype.name}")
    if tuple(shape) != expected_shape:
        raise ModelFileError(f"{name} has shape {tuple(shape)}, but the architecture "
                             f"needs {expected_shape}")


def _check_arrays(spec, arrays):
    if not isinstance(arrays, dict):
        _fail("arrays", "a dict of arrays", arrays)
    shapes = _check_names(spec, arrays)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise ModelFileError(f"{name} must be a NumPy array, got {type(a).__name__}")
        _check_layout(name, a.shape, a.dtype, shapes[name], spec["dtype"])
        if not np.isfinite(a).all():
            raise ModelFileError(f"{name} holds NaN or inf")


# ---- files ------------------------------------------------------------------

def save(model, path):
    """Write `model` to the .npz file `path` (used as given: no suffix added),
    atomically; see the module docstring for the format.

    Raises ValueError (nothing written) for a model that cannot be loaded back,
    and OSError (FileNotFoundError for a missing folder, PermissionError for a
    read-only one, ...) naming `path` when the file cannot be written; an
    existing file at `path` is then left as it was.
    """
    config, arrays = get_state(model)
    text = json.dumps(config, allow_nan=False)
    path = _path(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(suffix=".npz", prefix=".nncore-", dir=folder)
    except OSError as e:
        raise OSError(e.errno, f"cannot save the model into the folder {folder!r}: "
                               f"{e.strerror}", path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            fd = None
            # No allow_pickle=: NumPy < 2.2 would store it as an array; plain
            # float and unicode arrays are never pickled anyway.
            np.savez(f, config=np.array(text), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def load(path):
    """The Sequential saved at `path` by save: same dtype, layers, weights
    (bitwise), loss, optimizer with its state and the shuffling generator.

    Raises ModelFileError (a ValueError) naming what is wrong with a file that
    is not a loadable nncore model, and OSError when it cannot be opened.
    """
    path = _path(path)
    with open(path, "rb") as f:
        try:
            return _load(f)
        except ModelFileError as e:
            e.args = (f"{path}: {e.args[0]}",)
            raise


def _path(path):
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(path))
    raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


@contextlib.contextmanager
def _reading(what):
    """Turn any error raised while reading a damaged archive into a ModelFileError."""
    try:
        yield
    except (ModelFileError, MemoryError):
        raise
    except Exception as e:
        raise ModelFileError(f"cannot read {what}: the file is damaged or not an nncore "
                             f"model ({type(e).__name__}: {e})"[:400]) from e


def _header(npz, member):
    """(shape, dtype, check_size) from the .npy header of a zip member, without
    reading its data; check_size() raises unless the member holds exactly the
    data the header announces, so that nothing is allocated for data that is not there."""
    with npz.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{member} has .npy format version {version}, "
                                 f"expected 1.0 or 2.0")
        n_bytes = npz.zip.getinfo(member).file_size - f.tell()

    def check_size():
        expected = math.prod(shape) * dtype.itemsize
        if n_bytes != expected:
            raise ModelFileError(f"{member[:-4]} holds {n_bytes} bytes of data but its "
                                 f"header announces {expected}: the file is damaged")
    return shape, dtype, check_size


def _load(f):
    magic = f.read(4)
    f.seek(0)
    if magic not in _ZIP_MAGIC:
        raise ModelFileError("not an nncore model file: "
                             + ("the file is empty" if not magic else "not an .npz archive"))
    with _reading("the .npz archive"):
        npz = np.load(f, allow_pickle=False)
    with npz:
        with _reading("the .npz archive"):
            members = npz.zip.namelist()
        names = [m[:-4] for m in members if m.endswith(".npy")]
        if len(names) < len(members):
            raise ModelFileError(f"the archive holds {len(members) - len(names)} member(s) "
                                 f"that are not .npy arrays")
        if len(set(names)) < len(names):
            raise ModelFileError("the archive holds an array name twice")
        if "config" not in names:
            raise ModelFileError("no 'config' array: not an nncore model file")

        with _reading("config"):
            shape, dtype, check_size = _header(npz, "config.npy")
            if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
                raise ModelFileError(f"config must be a 0-d unicode array (a JSON string), got "
                                     f"shape {shape} dtype {dtype}")
            check_size()
            text = str(npz["config"][()])
        config = _json(text)

        spec = _parse(config)
        arrays = {}
        shapes = _check_names(spec, [n for n in names if n != "config"])
        for name in shapes:
            if name in names:
                with _reading(name):
                    shape, dtype, check_size = _header(npz, name + ".npy")
                    _check_layout(name, shape, dtype, shapes[name], spec["dtype"])
                    check_size()
                    arrays[name] = npz[name]
    return from_state(config, arrays)


def _json(text):
    def no_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) < len(keys):
            raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"config is not valid JSON: {e}"[:300]) from e


def _new_file_mode(path):
    """An overwritten file keeps its permissions; a new one gets 0o666 less the
    umask, as open() would give it (mkstemp makes 0o600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)        # no way to read it without setting it
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make the rename itself durable, where the platform allows (not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
