"""Saving, loading and pickling models: round trips are bitwise, a resumed fit
equals an uninterrupted one, writes are atomic, and every damaged file gives a
ModelFileError (a ValueError) that names the problem."""
import copy
import io as pyio
import json
import multiprocessing
import operator
import os
import pickle
import stat
import subprocess
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import nncore
from nncore import Dense, MLP, Sequential, io, losses, optim
from nncore.io import ModelFileError
from conftest import only_numpy_and

N, N_IN = 40, 4


# ---- models ---------------------------------------------------------------------

def data(loss, n_outputs, dtype=np.float64):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, N_IN)).astype(dtype)
    if loss in ("softmax_cross_entropy", "hinge"):
        y = rng.integers(0, n_outputs, N)
    elif loss == "binary_cross_entropy":
        y = (rng.random((N, n_outputs)) > 0.5).astype(dtype)
    else:
        y = rng.standard_normal((N, n_outputs)).astype(dtype)
    return X, y


def sgd_model():
    model = MLP([N_IN, 7, 3], "relu", seed=0, dtype="float32")
    opt = optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                    schedule=optim.StepDecay(1, 0.5))
    return model, "softmax_cross_entropy", opt


def adam_model():
    model = MLP([N_IN, 6, 5, 2], "tanh", seed=1, dtype="float64", l2=1e-3)
    opt = optim.Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=1e-4,
                     schedule=optim.ExponentialDecay(0.9))
    return model, "mse", opt


def no_bias_model():
    model = Sequential([Dense(N_IN, 5, "leaky_relu", slope=0.2, bias=False),
                        Dense(5, 4, "sigmoid", init="small"),
                        Dense(4, 3, bias=False)], seed=2, dtype="float64")
    return model, "hinge", optim.SGD(lr=0.1)


def numpy_backend_model():
    model = MLP([N_IN, 5, 2], "softplus", seed=3, dtype="float32", backend="numpy")
    return model, "binary_cross_entropy", optim.Adam(schedule=optim.InverseScaling(0.5))


def untrained_model():
    return MLP([N_IN, 3, 3], "softmax", init="glorot"), None, None


MODELS = {f.__name__: f for f in (sgd_model, adam_model, no_bias_model, numpy_backend_model,
                                 untrained_model)}


def trained(name, epochs=2):
    model, loss, opt = MODELS[name]()
    if loss is not None:
        X, y = data(loss, model.n_outputs)
        model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=8)
    return model


def assert_same_model(a, b):
    """Same config (optimizer epoch and t, shuffling state included) and bitwise
    the same weights and optimizer state."""
    config_a, arrays_a = a.get_state()
    config_b, arrays_b = b.get_state()
    assert config_a == config_b
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        x, y = arrays_a[key], arrays_b[key]
        assert (x.dtype, x.shape) == (y.dtype, y.shape), key
        assert x.tobytes() == y.tobytes(), key
    assert b.dtype == a.dtype and b.l2 == a.l2 and b.backend == a.backend and b.seed == a.seed
    assert type(b.loss) is type(a.loss) and type(b.optimizer) is type(a.optimizer)
    assert (b._shuffle_rng.bit_generator.state == a._shuffle_rng.bit_generator.state)


def assert_usable(loaded, original):
    """A loaded model predicts as the original and has the attributes a new one has."""
    fresh = MLP([N_IN, 2])
    assert vars(loaded).keys() == vars(fresh).keys()
    for layer in loaded.layers:
        new = Dense(**layer.config()).build(np.random.default_rng(0), loaded.dtype)
        assert vars(layer).keys() == vars(new).keys()
        for p in layer.parameters():
            assert p.flags.c_contiguous and p.flags.writeable and p.dtype == loaded.dtype
    X = np.random.default_rng(3).standard_normal((9, N_IN))
    assert loaded.forward(X).tobytes() == original.forward(X).tobytes()
    if original.loss is not None:
        np.testing.assert_array_equal(loaded.predict(X), original.predict(X))


# ---- round trips ----------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("filename", ["model.npz", "model"])
def test_round_trip(tmp_path, name, filename):
    model = trained(name)
    path = tmp_path / filename
    model.save(path)
    # the path is used as given: no ".npz" appended, nothing else left behind
    assert os.listdir(tmp_path) == [filename]
    loaded = nncore.load(path)
    assert isinstance(loaded, Sequential)
    assert_same_model(model, loaded)
    assert_usable(loaded, model)
    # str paths too, and loading twice gives the same
    assert_same_model(model, nncore.load(str(path)))


def test_file_layout(tmp_path):
    """The documented format: exactly these arrays, config a 0-d unicode JSON string."""
    model = trained("sgd_model")
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(
            ["config"] + [f"layers.{i}.{p}" for i in range(2) for p in ("weight", "bias")]
            + [f"optimizer.velocity.{j}" for j in range(4)])
        assert npz["config"].shape == () and npz["config"].dtype.kind == "U"
        config = json.loads(str(npz["config"]))
        np.testing.assert_array_equal(npz["layers.1.weight"], model.layers[1].weight)
        assert npz["optimizer.velocity.3"].dtype == np.float32
    assert config["format"] == "nncore-model" and config["format_version"] == 1
    assert config["nncore_version"] == nncore.__version__
    assert config["dtype"] == "float32" and config["seed"] == 0 and config["loss"] == \
        "softmax_cross_entropy"
    assert config["layers"] == [layer.config() for layer in model.layers]
    assert config["optimizer"] == dict(
        type="SGD", lr=0.05, weight_decay=1e-3, epoch=2, t=model.optimizer.t, momentum=0.9,
        nesterov=True, schedule=dict(type="StepDecay", step_size=1, gamma=0.5))
    assert model.optimizer.t == 2 * -(-N // 8)          # every optimizer counts its steps
    assert config["shuffle_rng"] == model._shuffle_rng.bit_generator.state


def test_optimizer_state_left_out_before_first_step(tmp_path):
    model = MLP([N_IN, 3], seed=0)
    model.optimizer = optim.Adam()
    model.save(tmp_path / "m")
    with np.load(tmp_path / "m", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["config", "layers.0.bias", "layers.0.weight"]
    loaded = nncore.load(tmp_path / "m")
    assert loaded.optimizer.t == 0 and loaded.optimizer.state == {"m": [], "v": []}
    assert_same_model(model, loaded)


def test_stale_optimizer_state_not_saved(tmp_path):
    """State that does not match the model (the optimizer stepped another one)
    would be reset by the next step: it is left out, and the file still loads."""
    other, loss, opt = sgd_model()
    X, y = data(loss, 3)
    other.fit(X, y, loss=loss, optimizer=opt, epochs=1)
    model = MLP([N_IN, 5, 3], seed=0)
    model.loss, model.optimizer = losses.get(loss), opt
    model.save(tmp_path / "m")
    loaded = nncore.load(tmp_path / "m")
    assert loaded.optimizer.state["velocity"] == []


def test_overwrite(tmp_path):
    path = tmp_path / "m.npz"
    trained("adam_model").save(path)
    model = trained("sgd_model")
    model.save(path)
    assert_same_model(model, nncore.load(path))
    assert os.listdir(tmp_path) == ["m.npz"]


def test_file_mode(tmp_path):
    old = os.umask(0o027)
    try:
        trained("untrained_model").save(tmp_path / "new")
    finally:
        os.umask(old)
    # a new file gets 0o666 less the umask (mkstemp alone would give 0o600) ...
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o640
    # ... and an overwritten one keeps its mode
    os.chmod(tmp_path / "new", 0o604)
    trained("untrained_model").save(tmp_path / "new")
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o604


def test_fortran_order_arrays_accepted(tmp_path):
    model = trained("adam_model")
    config, arrays = model.get_state()
    arrays = {k: np.asfortranarray(a) for k, a in arrays.items()}
    write(tmp_path / "f.npz", config, arrays)
    loaded = nncore.load(tmp_path / "f.npz")
    assert_same_model(model, loaded)
    assert_usable(loaded, model)


# ---- pickling -------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_pickle_round_trip(name):
    model = trained(name)
    loaded = pickle.loads(pickle.dumps(model))
    assert_same_model(model, loaded)
    assert_usable(loaded, model)


def test_pickle_leaves_out_workspaces():
    model = trained("sgd_model")
    model.forward(np.ones((100, N_IN)))          # fills the layers' workspaces
    assert model.layers[0]._x is not None
    state = model.__getstate__()
    assert state.keys() == {"config", "arrays"}
    assert all(isinstance(a, np.ndarray) for a in state["arrays"].values())
    weights = sum(a.nbytes for a in state["arrays"].values())
    assert len(pickle.dumps(model)) < weights + 4000
    loaded = pickle.loads(pickle.dumps(model))
    for layer in loaded.layers:
        assert layer._x is None and not hasattr(layer, "_zbuf")


def test_copies_are_independent():
    model = trained("sgd_model")
    for clone in (copy.copy(model), copy.deepcopy(model)):
        assert_same_model(model, clone)
        clone.layers[0].weight += 1
        clone.optimizer.state["velocity"][0] += 1
        assert not np.array_equal(clone.layers[0].weight, model.layers[0].weight)
        assert not np.array_equal(clone.optimizer.state["velocity"][0],
                                  model.optimizer.state["velocity"][0])


def test_multiprocessing():
    """The model travels to another process (spawned: it imports nncore anew)."""
    model = trained("sgd_model")
    X = np.random.default_rng(0).standard_normal((5, N_IN))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        proba = pool.submit(operator.methodcaller("predict_proba", X), model).result(60)
    np.testing.assert_array_equal(proba, model.predict_proba(X))


def test_set_state_fills_all_or_nothing():
    config, arrays = trained("sgd_model").get_state()
    arrays = dict(arrays, **{"layers.1.bias": np.full(3, np.nan, np.float32)})
    bare = Sequential.__new__(Sequential)
    with pytest.raises(ModelFileError, match="layers.1.bias holds NaN or inf"):
        bare.__setstate__({"config": config, "arrays": arrays})
    assert vars(bare) == {}


def wide(threads=2):
    """An Adam-trained 64-256-256-10 network whose GEMMs thread (above 2 MFLOP a
    step: 128 x 256 x 256 is 16.8 MFLOP), its data, and a float32 twin of X."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((512, 64)).astype(np.float32)
    y = (X[:, :10].argmax(axis=1) + (X[:, 10] > 1)) % 10
    model = MLP([64, 256, 256, 10], "relu", seed=4, dtype="float32")
    with nncore.threads(threads):
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=optim.Adam(lr=1e-3),
                  epochs=2, batch_size=128)
    return model, X, y


def test_pickle_is_the_state_and_nothing_else():
    """After fit (a cached plan), forward (layer workspaces) and predictions from two
    threads (per-thread buffers), the pickle holds the parameters, the optimizer's
    state (Adam: m and v, each the size of the parameters) and the config, nothing else."""
    from concurrent.futures import ThreadPoolExecutor
    model, X, _ = wide()
    model.forward(X[:100])
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(model.predict, [X, X[:7]]))
    assert model._plan_cache is not None and model.layers[0]._rows >= 128
    blob = pickle.dumps(model)
    only_numpy_and(blob, ("nncore.model", "Sequential"))
    # the bound: the parameter bytes times 1 + the optimizer's state arrays per parameter
    # (Adam: 3), plus the config as a dict (layers, optimizer, the shuffling generator's
    # state: under 1.5 KB) and about 120 B of header per array (name, dtype, shape)
    params = sum(p.nbytes for p in model.parameters())
    state = params * (1 + len(model.optimizer.active_states()))
    n_arrays = len(model.parameters()) * (1 + len(model.optimizer.active_states()))
    assert state <= len(blob) <= state + 1500 + 120 * n_arrays, (len(blob), state)
    loaded = pickle.loads(blob)
    assert_same_model(model, loaded)
    assert loaded._plan_cache is None
    assert not vars(loaded._local)
    for layer in loaded.layers:
        assert layer._x is None and layer._rows == 0 and not hasattr(layer, "_zbuf")


def test_unpickling_takes_the_arrays_it_reads():
    """pickle.loads allocates the arrays once (the pickle's own, taken as they are) and
    the zeroed gradients (calloc'd, traced as allocated: the parameters' bytes, a third
    of Adam's state): under 1.5 times the pickle, where a copy of each would be 2.3."""
    import tracemalloc
    model, X, _ = wide()
    blob = pickle.dumps(model)
    tracemalloc.start()
    try:
        loaded = pickle.loads(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * len(blob), (peak, len(blob))
    assert_same_model(model, loaded)
    for p in loaded.parameters():
        assert p.flags.writeable and p.flags.c_contiguous
    assert loaded.output(X).tobytes() == model.output(X).tobytes()


@pytest.mark.parametrize("read_only", [False, True])
def test_out_of_band_buffers(read_only):
    """Protocol 5 with out-of-band buffers (what Dask and Ray send): writeable buffers
    become the model's arrays, without a copy (the protocol's zero-copy contract, as for
    NumPy's own arrays); read-only ones are copied, so the model trains either way."""
    model = trained("sgd_model")
    before = [p.copy() for p in model.parameters()]
    buffers = []
    blob = pickle.dumps(model, protocol=5, buffer_callback=buffers.append)
    assert buffers                               # the arrays did travel out of band
    views = [b.raw().toreadonly() if read_only else b.raw() for b in buffers]
    loaded = pickle.loads(blob, buffers=views)
    assert_same_model(model, loaded)
    assert np.shares_memory(loaded.layers[0].weight, model.layers[0].weight) != read_only
    for p in loaded.parameters():
        assert p.flags.writeable and p.flags.c_contiguous
    if read_only:
        X, y = data("softmax_cross_entropy", 3)
        loaded.fit(X, y, epochs=1, batch_size=8)
        for p, b in zip(model.parameters(), before):
            assert p.tobytes() == b.tobytes()


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_a_layer_copies_without_its_model(how):
    """A Dense of a model pickles and copies as its config and weights: no workspace,
    no last input, and no owner (the copy may join a new model)."""
    model = trained("no_bias_model")
    model.forward(np.ones((50, N_IN)))
    layer = model.layers[1]
    if how == "pickle":
        blob = pickle.dumps(layer)
        only_numpy_and(blob, ("nncore.layers", "Dense"))
        assert len(blob) < layer.weight.nbytes + layer.bias.nbytes + 800
        twin = pickle.loads(blob)
    else:
        twin = (copy.deepcopy if how == "deepcopy" else copy.copy)(layer)
    assert twin.config() == layer.config()
    for a, b in zip(twin.parameters(), layer.parameters()):
        assert a.tobytes() == b.tobytes() and a.dtype == b.dtype and a is not b
    assert twin._owner is None and twin._x is None and twin._rows == 0
    assert twin.grad_weight.shape == layer.weight.shape and not twin.grad_weight.any()
    X = np.random.default_rng(0).standard_normal((6, 5))
    assert twin.forward(X).tobytes() == Dense.forward(layer, X).tobytes()
    Sequential([Dense(N_IN, 5), twin], seed=0, dtype="float64")     # not another's now
    assert twin._owner() is not model
    bare = pickle.loads(pickle.dumps(Dense(3, 2)))                 # never built
    assert not bare.built and bare.config() == Dense(3, 2).config()


_CHILD = """
import json, pickle, sys
import nncore
assert nncore.get_num_threads() == {threads}, nncore.get_num_threads()
with open(sys.argv[1], "rb") as f:
    model, X, y = pickle.load(f)
out = model.output(X)
model.fit(X, y, epochs=2, batch_size=128)          # loss and optimizer from the pickle
with open(sys.argv[1], "wb") as f:
    pickle.dump((out, model.parameters(), model.optimizer.state), f)
"""


@pytest.mark.parametrize("here, there", [(2, 1), (1, 2)])
def test_unpickled_in_a_process_of_another_thread_count(tmp_path, here, there):
    """A model trained on `here` threads, unpickled in a fresh process whose default is
    `there` threads (OMP_NUM_THREADS), gives bitwise the same outputs and, trained on,
    the same weights and optimizer state as the original trained on here."""
    model, X, y = wide(threads=here)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps((model, X, y)))
    env = dict(os.environ, OMP_NUM_THREADS=str(there))
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(threads=there), str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out, params, state = pickle.loads(path.read_bytes())
    with nncore.threads(here):
        assert out.tobytes() == model.output(X).tobytes()
        model.fit(X, y, epochs=2, batch_size=128)
    for a, b in zip(params, model.parameters()):
        assert a.tobytes() == b.tobytes()
    assert state.keys() == model.optimizer.state.keys() == {"m", "v"}
    for name in state:
        for a, b in zip(state[name], model.optimizer.state[name]):
            assert a.tobytes() == b.tobytes()


# ---- resuming -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("via", ["file", "pickle", "none"])
def test_resume_equals_uninterrupted(tmp_path, dtype, opt, via):
    """2 epochs, save, load, 2 more == 4 epochs straight, bitwise: weights,
    optimizer state (momentum, Adam's m, v, t), schedule epoch and shuffling."""
    X, y = data("softmax_cross_entropy", 3, dtype)

    def new():
        model = MLP([N_IN, 8, 3], "relu", seed=5, dtype=dtype, l2=1e-3)
        if opt == "sgd":
            optimizer = optim.SGD(lr=0.05, momentum=0.9, schedule=optim.StepDecay(1, 0.7))
        else:
            optimizer = optim.Adam(lr=0.01, weight_decay=1e-3,
                                   schedule=optim.ExponentialDecay(0.8))
        return model, optimizer

    straight, optimizer = new()
    straight.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=4,
                 batch_size=7)

    first, optimizer = new()
    first.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=2, batch_size=7)
    if via == "file":
        first.save(tmp_path / "checkpoint")
        resumed = nncore.load(tmp_path / "checkpoint")
    elif via == "pickle":
        resumed = pickle.loads(pickle.dumps(first))
    else:
        resumed = first
    resumed.fit(X, y, epochs=2, batch_size=7)     # loss and optimizer from the model
    assert resumed.optimizer.epoch == 4
    assert_same_model(straight, resumed)


# ---- refusing to save -----------------------------------------------------------

class MyLoss(losses.MSE):
    pass


@pytest.mark.parametrize("case", ["lambda-schedule", "custom-loss", "nan-weight",
                                  "wrong-dtype-weight"])
def test_unsaveable_model(tmp_path, case):
    model = trained("adam_model")
    if case == "lambda-schedule":
        model.optimizer.schedule, match = (lambda epoch: 1.0), "schedule"
    elif case == "custom-loss":
        model.loss, match = MyLoss(), "loss"
    elif case == "nan-weight":
        model.layers[1].weight[0, 0], match = np.nan, "layers.1.weight holds NaN"
    else:
        model.layers[0].weight, match = model.layers[0].weight.astype(np.float32), "dtype"
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / "m")
    with pytest.raises(ValueError, match=match):
        pickle.dumps(model)
    assert os.listdir(tmp_path) == []


def test_bad_path_type():
    with pytest.raises(TypeError, match="path"):
        trained("untrained_model").save(pyio.BytesIO())
    with pytest.raises(TypeError, match="path"):
        nncore.load(3.5)


# ---- atomic writes --------------------------------------------------------------

def _fail_savez(*args, **kwargs):
    args[0].write(b"PK\x03\x04 half an archive")
    raise RuntimeError("disk on fire")


def _fail_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _fail_os(*args, **kwargs):
    raise OSError(5, "I/O error")


@pytest.mark.parametrize("target, fail, error", [
    (np, ("savez", _fail_savez), RuntimeError),
    (np, ("savez", _fail_interrupt), KeyboardInterrupt),
    (os, ("fsync", _fail_os), OSError),
    (os, ("replace", _fail_os), OSError),
    (os, ("chmod", _fail_os), OSError),
])
def test_failed_write_leaves_old_file(tmp_path, monkeypatch, target, fail, error):
    path = tmp_path / "m.npz"
    old = trained("adam_model")
    old.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(target, *fail)
    with pytest.raises(error):
        trained("sgd_model").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]        # no temporary file left
    assert_same_model(old, nncore.load(path))


def test_missing_folder(tmp_path):
    path = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(FileNotFoundError, match="m.npz") as info:
        trained("untrained_model").save(path)
    assert info.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    old = trained("adam_model")
    old.save(folder / "m.npz")
    before = (folder / "m.npz").read_bytes()
    new = trained("sgd_model")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):      # root: chmod does not stop the write
            new.save(folder / "m.npz")
            assert_same_model(new, nncore.load(folder / "m.npz"))
        else:
            with pytest.raises(PermissionError, match="m.npz"):
                new.save(folder / "m.npz")
            assert (folder / "m.npz").read_bytes() == before
        assert os.listdir(folder) == ["m.npz"]
    finally:
        folder.chmod(0o755)


def test_unwritable_folder_error_names_path(tmp_path, monkeypatch):
    """What a read-only folder gives, whoever runs the tests (root ignores chmod)."""
    path = tmp_path / "m.npz"
    old = trained("adam_model")
    old.save(path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(kwargs["dir"], "tmpx.npz"))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(PermissionError, match="Permission denied") as info:
        trained("sgd_model").save(path)
    assert info.value.filename == str(path) and str(tmp_path) in str(info.value)
    monkeypatch.undo()
    assert_same_model(old, nncore.load(path))
    assert os.listdir(tmp_path) == ["m.npz"]


def test_target_is_a_folder(tmp_path):
    (tmp_path / "m.npz").mkdir()
    with pytest.raises(OSError):
        trained("untrained_model").save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == ["m.npz"] and os.listdir(tmp_path / "m.npz") == []


def test_load_missing_or_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        nncore.load(tmp_path / "nothing.npz")
    with pytest.raises(IsADirectoryError):
        nncore.load(tmp_path)


# ---- damaged files --------------------------------------------------------------

def write(path, config, arrays, config_array=None):
    """An .npz like save writes, from a (possibly broken) config and arrays."""
    if config_array is None:
        config_array = np.array(json.dumps(config))
    with open(path, "wb") as f:
        np.savez(f, config=config_array, **arrays)


def good_state(name):
    config, arrays = trained(name).get_state()
    return copy.deepcopy(config), {k: a.copy() for k, a in arrays.items()}


def assert_refused(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        nncore.load(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{path}: ")


def _set(path, value):
    """A config edit: put value at path (keys and indices) in the config."""
    def edit(config):
        *head, last = path
        for key in head:
            config = config[key]
        config[last] = value
    return edit


def _drop(*path):
    def edit(config):
        *head, last = path
        for key in head:
            config = config[key]
        del config[last]
    return edit


CONFIG_CASES = [
    # (id, model, edit, message)
    ("not-an-object", "sgd_model", None, "config must be a JSON object, got an array"),
    ("format-name", "sgd_model", _set(["format"], "keras"), "not an nncore model file"),
    ("format-missing", "sgd_model", _drop("format"), "not an nncore model file"),
    ("newer-version", "sgd_model", _set(["format_version"], 2), "newer.*upgrade nncore"),
    ("version-zero", "sgd_model", _set(["format_version"], 0), "format_version must be an int"),
    ("version-string", "sgd_model", _set(["format_version"], "1"), "format_version"),
    ("version-bool", "sgd_model", _set(["format_version"], True), "format_version"),
    ("unknown-key", "sgd_model", _set(["extra"], 1), "unknown keys 'extra'"),
    ("missing-key", "sgd_model", _drop("dtype"), "lacks 'dtype'"),
    ("nncore-version-type", "sgd_model", _set(["nncore_version"], 1), "nncore_version"),
    ("dtype", "sgd_model", _set(["dtype"], "float16"), "config.dtype must be one of"),
    ("l2-negative", "sgd_model", _set(["l2"], -1.0), "config.l2 must be a finite number >= 0"),
    ("l2-string", "sgd_model", _set(["l2"], "0"), "config.l2"),
    ("backend", "sgd_model", _set(["backend"], "cuda"), "config.backend"),
    ("seed-negative", "sgd_model", _set(["seed"], -1), "config.seed"),
    ("seed-float", "sgd_model", _set(["seed"], 1.5), "config.seed"),
    ("layers-empty", "sgd_model", _set(["layers"], []), "config.layers is empty"),
    ("layers-object", "sgd_model", _set(["layers"], {}), "config.layers must be an array"),
    ("layer-number", "sgd_model", _set(["layers", 0], 3), r"config.layers\[0\] must be an obj"),
    ("layer-unknown-key", "sgd_model", _set(["layers", 0, "dropout"], 0.5),
     "unknown keys 'dropout'"),
    ("layer-missing-key", "sgd_model", _drop("layers", 1, "slope"), "lacks 'slope'"),
    ("activation", "sgd_model", _set(["layers", 0, "activation"], "gelu"), "activation"),
    ("init", "sgd_model", _set(["layers", 0, "init"], "orthogonal"), "init must be one of"),
    ("n_in-float", "sgd_model", _set(["layers", 0, "n_in"], 4.0), "n_in must be an int"),
    ("n_out-zero", "sgd_model", _set(["layers", 1, "n_out"], 0), "n_out must be an int >= 1"),
    ("bias-int", "sgd_model", _set(["layers", 0, "bias"], 1), "bias must be true or false"),
    ("slope-string", "sgd_model", _set(["layers", 0, "slope"], "0.01"), "slope"),
    ("slope-null", "sgd_model", _set(["layers", 0, "slope"], None), "slope"),
    ("chain", "sgd_model", _set(["layers", 1, "n_in"], 99), "takes 99 inputs"),
    ("loss", "sgd_model", _set(["loss"], "cross_entropy"), "config.loss must be one of"),
    ("optimizer-type", "sgd_model", _set(["optimizer", "type"], "RMSprop"),
     "config.optimizer.type"),
    ("optimizer-list", "sgd_model", _set(["optimizer"], [1]), "config.optimizer must be an obj"),
    ("optimizer-unknown-key", "adam_model", _set(["optimizer", "amsgrad"], True),
     "unknown keys 'amsgrad'"),
    ("optimizer-wrong-type-keys", "adam_model", _set(["optimizer", "type"], "SGD"),
     "config.optimizer lacks 'momentum'"),
    ("optimizer-missing-key", "sgd_model", _drop("optimizer", "lr"), "lacks 'lr'"),
    ("lr-string", "sgd_model", _set(["optimizer", "lr"], "0.1"), "config.optimizer.lr"),
    ("lr-negative", "sgd_model", _set(["optimizer", "lr"], -0.1), "lr must be > 0"),
    ("nesterov-string", "sgd_model", _set(["optimizer", "nesterov"], "yes"), "nesterov"),
    ("nesterov-no-momentum", "sgd_model", _set(["optimizer", "momentum"], 0.0),
     "nesterov=True needs momentum"),
    ("epoch-negative", "sgd_model", _set(["optimizer", "epoch"], -1), "epoch must be an int"),
    ("t-float", "adam_model", _set(["optimizer", "t"], 1.5), "t must be an int"),
    ("betas-length", "adam_model", _set(["optimizer", "betas"], [0.9]), "betas"),
    ("beta-range", "adam_model", _set(["optimizer", "betas"], [1.5, 0.9]), "betas must lie"),
    ("schedule-type", "sgd_model", _set(["optimizer", "schedule", "type"], "Cosine"),
     "schedule.type"),
    ("schedule-key", "sgd_model", _set(["optimizer", "schedule", "gamma2"], 1.0), "gamma2"),
    ("schedule-step", "sgd_model", _set(["optimizer", "schedule", "step_size"], 0),
     "step_size"),
    ("rng-generator", "sgd_model", _set(["shuffle_rng", "bit_generator"], "MT19937"),
     "bit_generator"),
    ("rng-missing", "sgd_model", _drop("shuffle_rng", "uinteger"), "lacks 'uinteger'"),
    ("rng-state-string", "sgd_model", _set(["shuffle_rng", "state", "state"], "12"),
     "shuffle_rng.state.state"),
    ("rng-state-huge", "sgd_model", _set(["shuffle_rng", "state", "inc"], 2**130),
     "shuffle_rng.state.inc"),
]


@pytest.mark.parametrize("name, model, edit, match", CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(tmp_path, name, model, edit, match):
    config, arrays = good_state(model)
    if edit is None:
        config = [config]
    else:
        edit(config)
    write(tmp_path / "bad.npz", config, arrays)
    assert_refused(tmp_path / "bad.npz", match)


@pytest.mark.parametrize("name, config_array, match", [
    ("not-json", np.array("{'format': 'nncore-model'"), "config is not valid JSON"),
    ("nan", np.array('{"l2": NaN}'), "NaN is not a number JSON allows"),
    ("duplicate-keys", np.array('{"l2": 0, "l2": 1}'), "duplicate keys"),
    ("deep", np.array("[" * 100000 + "]" * 100000), "config is not valid JSON"),
    ("empty", np.array(""), "config is not valid JSON"),
    ("bytes", np.array(b'{"format": "nncore-model"}'), "0-d unicode array"),
    ("1-d", np.array(['{"format": "nncore-model"}']), "0-d unicode array"),
    ("int", np.array(3), "0-d unicode array"),
    ("object", np.array({"format": "nncore-model"}, dtype=object), "0-d unicode array"),
])
def test_bad_config_array(tmp_path, name, config_array, match):
    _, arrays = good_state("sgd_model")
    write(tmp_path / "bad.npz", None, arrays, config_array)
    assert_refused(tmp_path / "bad.npz", match)


def _replace(key, fn):
    def edit(arrays):
        arrays[key] = fn(arrays[key])
    return edit


def _remove(key):
    return lambda arrays: arrays.pop(key)


def _add(key, value):
    return lambda arrays: arrays.update({key: value})


def _poke(key, value, index=0):
    def edit(arrays):
        arrays[key].flat[index] = value
    return edit


ARRAY_CASES = [
    ("weight-transposed", _replace("layers.0.weight", lambda a: a.T.copy()),
     r"layers.0.weight has shape \(4, 7\), but the architecture needs \(7, 4\)"),
    ("bias-short", _replace("layers.1.bias", lambda a: a[:2]), "layers.1.bias has shape"),
    ("weight-0d", _replace("layers.1.weight", lambda a: np.array(a[0, 0])),
     r"layers.1.weight has shape \(\), but"),
    ("weight-float64", _replace("layers.0.weight", lambda a: a.astype(np.float64)),
     "layers.0.weight has dtype float64, expected the model's float32"),
    ("weight-big-endian", _replace("layers.0.weight", lambda a: a.astype(">f4")), "dtype"),
    ("weight-int", _replace("layers.0.weight", lambda a: a.astype(np.int32)), "dtype int32"),
    ("weight-missing", _remove("layers.1.weight"), "'layers.1.weight' are missing"),
    ("bias-missing", _remove("layers.0.bias"), "'layers.0.bias' are missing"),
    ("extra-array", _add("notes", np.zeros(3, np.float32)), "unexpected arrays 'notes'"),
    ("extra-layer", _add("layers.2.weight", np.zeros((3, 3), np.float32)),
     "unexpected arrays 'layers.2.weight'"),
    ("unknown-state", _add("optimizer.momentum.0", np.zeros((7, 4), np.float32)),
     "optimizer.momentum.0"),
    ("nan-weight", _poke("layers.0.weight", np.nan, 5), "layers.0.weight holds NaN or inf"),
    ("inf-bias", _poke("layers.1.bias", -np.inf), "layers.1.bias holds NaN or inf"),
    ("nan-state", _poke("optimizer.velocity.2", np.nan), "optimizer.velocity.2 holds NaN"),
    ("state-incomplete", _remove("optimizer.velocity.1"),
     "optimizer state 'velocity' is incomplete: optimizer.velocity.1 missing"),
    ("state-shape", _replace("optimizer.velocity.0", lambda a: a[:3]),
     "optimizer.velocity.0 has shape"),
]


@pytest.mark.parametrize("name, edit, match", ARRAY_CASES, ids=[c[0] for c in ARRAY_CASES])
def test_bad_arrays(tmp_path, name, edit, match):
    config, arrays = good_state("sgd_model")
    edit(arrays)
    write(tmp_path / "bad.npz", config, arrays)
    assert_refused(tmp_path / "bad.npz", match)
    # the same state is refused when unpickled
    with pytest.raises(ModelFileError, match=match):
        Sequential.from_state(config, arrays)


def test_bias_for_layer_without_one(tmp_path):
    config, arrays = good_state("no_bias_model")
    arrays["layers.0.bias"] = np.zeros(5)
    write(tmp_path / "bad.npz", config, arrays)
    assert_refused(tmp_path / "bad.npz", "unexpected arrays 'layers.0.bias'")


def test_no_optimizer_state_is_fine(tmp_path):
    """All of a state left out is the state before the first step."""
    config, arrays = good_state("sgd_model")
    arrays = {k: a for k, a in arrays.items() if not k.startswith("optimizer.")}
    write(tmp_path / "m.npz", config, arrays)
    assert nncore.load(tmp_path / "m.npz").optimizer.state["velocity"] == []


_UNPICKLED = []


def _unpickled():
    _UNPICKLED.append(True)
    return 0.0


class Trap:
    """Records being unpickled."""

    def __reduce__(self):
        return _unpickled, ()


def test_object_array_never_unpickled(tmp_path):
    config, arrays = good_state("sgd_model")
    trap = np.empty((7, 4), dtype=object)
    trap[...] = Trap()
    buf = pyio.BytesIO()
    np.save(buf, trap, allow_pickle=True)
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, config=np.array(json.dumps(config)),
                 **{k: a for k, a in arrays.items() if k != "layers.0.weight"})
    with zipfile.ZipFile(tmp_path / "bad.npz", "a") as z:
        z.writestr("layers.0.weight.npy", buf.getvalue())
    assert_refused(tmp_path / "bad.npz", "layers.0.weight has dtype object")
    assert _UNPICKLED == []


def test_header_claiming_a_huge_array(tmp_path):
    """The shape in a .npy header is checked before any memory is allocated for it."""
    config, arrays = good_state("sgd_model")
    buf = pyio.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    buf.write(b"\0" * 64)
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, config=np.array(json.dumps(config)),
                 **{k: a for k, a in arrays.items() if k != "layers.0.weight"})
    with zipfile.ZipFile(tmp_path / "bad.npz", "a") as z:
        z.writestr("layers.0.weight.npy", buf.getvalue())
    assert_refused(tmp_path / "bad.npz", r"shape \(1000000000000, 4\)")


def test_data_shorter_than_header(tmp_path):
    config, arrays = good_state("sgd_model")
    buf = pyio.BytesIO()
    np.save(buf, arrays["layers.1.weight"])
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, config=np.array(json.dumps(config)),
                 **{k: a for k, a in arrays.items() if k != "layers.1.weight"})
    with zipfile.ZipFile(tmp_path / "bad.npz", "a") as z:
        z.writestr("layers.1.weight.npy", buf.getvalue()[:-4])
    # (7 * 3 float32) = 84 bytes announced, 80 there
    assert_refused(tmp_path / "bad.npz", "layers.1.weight holds 80 bytes of data but its "
                                         "header announces 84")


@pytest.mark.parametrize("name, content, match", [
    ("empty", b"", "the file is empty"),
    ("random", np.random.default_rng(0).bytes(2000), "not an .npz archive"),
    ("text", b"weights: [1, 2, 3]\n", "not an .npz archive"),
    ("pickle", pickle.dumps({"config": "{}"}), "not an .npz archive"),
    ("zip-magic-then-junk", b"PK\x03\x04" + bytes(200), "cannot read the .npz archive"),
])
def test_not_a_model_file(tmp_path, name, content, match):
    (tmp_path / "bad").write_bytes(content)
    assert_refused(tmp_path / "bad", match)


def test_npy_file(tmp_path):
    with open(tmp_path / "bad.npz", "wb") as f:
        np.save(f, np.zeros(3))
    assert_refused(tmp_path / "bad.npz", "not an .npz archive")


def test_zip_without_config(tmp_path):
    np.savez(tmp_path / "bad.npz", weights=np.zeros(3))
    assert_refused(tmp_path / "bad.npz", "no 'config' array")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    assert_refused(tmp_path / "empty.npz", "no 'config' array")


def test_zip_with_other_members(tmp_path):
    config, arrays = good_state("sgd_model")
    write(tmp_path / "bad.npz", config, arrays)
    with zipfile.ZipFile(tmp_path / "bad.npz", "a") as z:
        z.writestr("README.txt", "hello")
    assert_refused(tmp_path / "bad.npz", "not .npy arrays")


def test_zip_with_a_name_twice(tmp_path):
    config, arrays = good_state("sgd_model")
    write(tmp_path / "bad.npz", config, arrays)
    buf = pyio.BytesIO()
    np.save(buf, arrays["layers.0.bias"])
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(tmp_path / "bad.npz", "a") as z:
            z.writestr("layers.0.bias.npy", buf.getvalue())
    assert_refused(tmp_path / "bad.npz", "array name twice")


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
    model = trained("sgd_model")
    path = tmp_path_factory.mktemp("saved") / "m.npz"
    model.save(path)
    return model, path.read_bytes()


def test_truncated(tmp_path, saved_bytes):
    _, content = saved_bytes
    lengths = sorted(set(range(0, len(content), 11)) | set(range(len(content) - 40, len(content))))
    for length in lengths:
        (tmp_path / "cut").write_bytes(content[:length])
        assert_refused(tmp_path / "cut", None)


def test_flipped_bytes(tmp_path, saved_bytes):
    """A flipped byte gives a ModelFileError, or (in a timestamp, say) the same model."""
    model, content = saved_bytes
    n_loaded = 0
    for pos in range(0, len(content), 7):
        damaged = bytearray(content)
        damaged[pos] ^= 0xFF
        (tmp_path / "flip").write_bytes(bytes(damaged))
        try:
            loaded = nncore.load(tmp_path / "flip")
        except ModelFileError:
            continue
        assert_same_model(model, loaded)
        n_loaded += 1
    assert n_loaded < len(content) // 7 // 4


@pytest.mark.parametrize("opt, state", [(lambda: optim.Adam(lr=0.01), "v"),
                                        (lambda: optim.RMSprop(lr=0.01), "square_avg")])
def test_state_no_optimizer_can_produce_is_refused(tmp_path, opt, state):
    model = MLP([N_IN, 5, 3], seed=0)
    X, y = data("softmax_cross_entropy", 3, np.float32)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=opt(), epochs=1)
    model.optimizer.state[state][1][2] = -0.5
    with pytest.raises(ValueError, match=f"{state}.1 holds a negative value"):
        model.save(tmp_path / "m.npz")
    # written by hand: refused on load, naming the member
    model.optimizer.state[state][1][2] = 0.5
    config, arrays = model.get_state()
    arrays = dict(arrays, **{f"optimizer.{state}.1": -arrays[f"optimizer.{state}.1"]})
    np.savez(tmp_path / "bad.npz", config=np.array(json.dumps(config)), **arrays)
    with pytest.raises(ModelFileError, match=f"optimizer state.*{state}.1 holds a negative"):
        nncore.load(tmp_path / "bad.npz")


def test_step_count_beyond_the_kernels_is_refused(tmp_path):
    model = trained("adam_model")
    config, arrays = model.get_state()
    config["optimizer"]["t"] = 2**70
    np.savez(tmp_path / "bad.npz", config=np.array(json.dumps(config)), **arrays)
    with pytest.raises(ModelFileError, match=r"config.optimizer.t must be an int in \[0, "):
        nncore.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
                         ids=["deflate", "bzip2", "lzma"])
def test_compressed_members_are_refused(tmp_path, method):
    """A compressed member could expand a small file into gigabytes (a zip bomb): the
    format stores members, and nothing else is read."""
    model = trained("adam_model")
    model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as src, \
            zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=method) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    assert_refused(tmp_path / "bomb.npz", "is compressed")


def test_declared_sizes_must_fit_the_file(tmp_path):
    """A stored member whose declared size exceeds the file (a forged central directory)
    is refused before anything is read."""
    model = trained("sgd_model")
    model.save(tmp_path / "m.npz")
    data = bytearray((tmp_path / "m.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        info = z.getinfo("layers.0.weight.npy")
    # the central directory entry of that member: patch its uncompressed size field
    name = b"layers.0.weight.npy"
    cd = data.index(b"PK\x01\x02")                     # the first central-directory entry
    at = data.index(name, cd) - 46 + 24                # its 46-byte header: size at 24
    data[at:at + 4] = (len(data) * 4).to_bytes(4, "little")
    (tmp_path / "forged.npz").write_bytes(bytes(data))
    assert info.file_size < len(data)
    with pytest.raises(ModelFileError, match="declares|damaged"):
        nncore.load(tmp_path / "forged.npz")


def test_load_holds_one_copy_of_each_array(tmp_path):
    """Loading a model of 8 MB of float64 weights allocates about 8 MB, not two or three
    times that (numpy's allocations are traced by tracemalloc)."""
    import tracemalloc
    model = MLP([1000, 1000, 2], seed=0, dtype="float64")
    model.save(tmp_path / "big.npz")
    size = sum(p.nbytes for p in model.parameters())
    tracemalloc.start()
    try:
        loaded = nncore.load(tmp_path / "big.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_same_model(model, loaded)
    # the weights once, their (untouched, calloc'd) gradients traced as allocated,
    # and small buffers: well below two copies of the weights plus the gradients
    assert peak < 2.5 * size, (peak, size)
    assert loaded.layers[0].weight.flags.writeable


# ---- careless paths ------------------------------------------------------------------

def test_save_refuses_a_read_only_file(tmp_path):
    """np.save and torch.save refuse a read-only file; a rename would replace it."""
    if os.geteuid() == 0:
        pytest.skip("root may write any file: os.access says so, nothing to refuse")
    path = tmp_path / "m.npz"
    trained("sgd_model").save(path)
    before = path.read_bytes()
    path.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        trained("adam_model").save(path)
    assert path.read_bytes() == before


def test_save_refuses_a_read_only_file_whoever_runs(tmp_path, monkeypatch):
    """The same refusal, with os.access saying the file is not writable (as it says
    for any user but root)."""
    path = tmp_path / "m.npz"
    trained("sgd_model").save(path)
    before = path.read_bytes()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK
                        and os.fspath(p) == str(path) else real(p, mode, **kw))
    with pytest.raises(PermissionError, match="read-only") as info:
        trained("adam_model").save(path)
    assert info.value.filename == str(path) and path.read_bytes() == before


def test_save_does_not_copy_a_setuid_bit(tmp_path):
    path = tmp_path / "m.npz"
    trained("sgd_model").save(path)
    path.chmod(0o4755 | stat.S_ISGID)
    trained("sgd_model").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


@pytest.mark.parametrize("target", ["", ".", "folder/"])
def test_save_to_an_empty_name_or_a_folder_writes_nothing(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises((ValueError, IsADirectoryError)):
        trained("sgd_model").save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert list((tmp_path / "folder").iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_load_of_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        nncore.load(fifo)          # opening it would block until a writer came


def test_a_killed_save_leaves_no_temporary_behind(tmp_path):
    """kill -9 during save leaves its temporary file; the next save to that folder
    removes the temporaries of processes that no longer run (and only ours)."""
    script = (f"import os, numpy as np, nncore\n"
              f"m = nncore.MLP([200, 200, 2], seed=0)\n"
              f"np.savez = lambda *a, **k: os.kill(os.getpid(), 9)\n"
              f"m.save({str(tmp_path / 'm.npz')!r})\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert res.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".nncore-")
    other = tmp_path / ".other-tool.npz"
    other.write_bytes(b"not ours")
    alive = tmp_path / f".nncore-{os.getpid()}-x.npz"   # a save of a live process: kept
    alive.write_bytes(b"")
    trained("sgd_model").save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other-tool.npz", alive.name, "m.npz"])
