"""Hostile model files: a mutation fuzzer over valid saved models.

A few small models are saved (SGD with momentum, Adam, plain SGD with a
schedule, never fitted; float32 and float64; with and without biases), then
mutated: bit flips, truncation, member swaps between files, members
recompressed with deflate, bzip2 or LZMA, JSON config mutations and .npy
header mutations. Every case is loaded with the public API (nncore.load) in a
child process that reports each file as it finishes: a child killed by a
signal is a crash of the case it was on, a child still running after its
timeout is a hang; the cases after it go to a new child.

For each case: a refusal is nncore.io.ModelFileError or OSError with a message;
a file that loads holds only stored (uncompressed) members, as the format
says, and is usable: output and predict, one epoch of fit (finite weights
after it, or TrainingDiverged with the weights kept finite), and a save/load
round trip with the same outputs.

Known bugs in the loader, each named in the strict xfail it gets (nncore/io.py
is the place to fix them):
- BUG_COMPRESSED: members compressed with deflate/bzip2/LZMA are accepted, so
  the memory a load takes is not bounded by the file's size (a zip bomb);
- BUG_NEGATIVE_V: an Adam state with a negative v (finite) is accepted, and
  fit then writes NaN into the weights;
- BUG_HUGE_T: an Adam step count beyond a C long (t = 2**70) is accepted;
- BUG_LOSS_ACTIVATION: a loss that does not fit the last layer's activation is
  accepted (fit then refuses the model);
- BUG_FORTRAN: an optimizer state with fortran_order True in its .npy header is
  accepted as it is (not C-contiguous), and the compiled fit then refuses it.
The child tells these from other failures by what the loaded model holds
(the archive's compression types, optimizer.state["v"], optimizer.t, the loss
and the last activation), and a
case showing one is marked xfail(strict=True) with the bug's reason; each bug
also has a fixed reproducer below.

About 400 cases run by default, in two children (a few seconds on 2 cores); the
`slow` marker runs ~3000 more (`pytest -m slow tests/test_hostile_files.py`).
"""
import io as _io
import json
import os
import random
import struct
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest

import nncore
from nncore import MLP, Dense, Sequential, optim

BUG_COMPRESSED = ("nncore.load accepts compressed (deflate/bzip2/LZMA) members: memory for a "
                  "load is not bounded by the file's size (zip bomb); the format is stored")
BUG_NEGATIVE_V = ("nncore.load accepts an Adam state with a negative v (finite): fit then "
                  "writes NaN into the weights")
BUG_HUGE_T = "nncore.load accepts an Adam step count t beyond a C long (e.g. 2**70)"
BUG_LOSS_ACTIVATION = ("nncore.load accepts a loss that does not fit the last activation "
                       "(e.g. hinge after softmax): the model then cannot fit")
BUG_FORTRAN = ("nncore.load accepts an optimizer state stored in Fortran order: fit then "
               "fails with \"layers[i]['s1w'] must be C-contiguous\"")
BUGS = {"compressed": BUG_COMPRESSED, "negative-v": BUG_NEGATIVE_V, "huge-t": BUG_HUGE_T,
        "loss-activation": BUG_LOSS_ACTIVATION, "fortran-state": BUG_FORTRAN}

BATCH_TIMEOUT = 120          # seconds for one child's whole list; a hang costs this once
DEFAULT_CASES, SLOW_CASES = 400, 3000

# ---- the child: loads a list of files and reports each one -----------------------------

CHILD = r'''
import json, resource, sys, zipfile
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # a zip bomb fails, not the host
import nncore
from nncore.io import ModelFileError

LONG_MAX = 2 ** 63 - 1


def known_bugs(path, model):
    bugs = []
    with zipfile.ZipFile(path) as z:
        if any(i.compress_type != zipfile.ZIP_STORED for i in z.infolist()):
            bugs.append("compressed")
    opt = model.optimizer
    if opt is not None:
        if any(np.any(v < 0) for v in opt.state.get("v", [])):
            bugs.append("negative-v")
        if getattr(opt, "t", 0) > LONG_MAX:
            bugs.append("huge-t")
        if any(not a.flags.c_contiguous for arrays in opt.state.values() for a in arrays):
            bugs.append("fortran-state")
    if (model.loss is not None and model.loss.name != "mse"
            and model.layers[-1].activation != "identity"):
        bugs.append("loss-activation")
    return bugs


def usable(model, scratch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, model.n_inputs)).astype(model.dtype)
    out = model.output(X)
    assert out.shape == (8, model.n_outputs) and out.dtype == model.dtype, out.shape
    loss = model.loss.name if model.loss is not None else "mse"
    if model.loss is not None:
        model.predict(X)
    if loss in ("softmax_cross_entropy", "hinge"):
        y = np.arange(8) % model.n_outputs
    else:
        y = rng.random((8, model.n_outputs)).astype(model.dtype)
    try:
        model.fit(X, y, loss=loss, epochs=1, batch_size=4)
    except nncore.TrainingDiverged:
        pass
    for p in model.parameters():
        assert np.isfinite(p).all(), "fit left NaN or inf in the weights"
    model.save(scratch)
    again = nncore.load(scratch)
    np.testing.assert_array_equal(again.output(X), model.output(X))
    for p, q in zip(again.parameters(), model.parameters()):
        np.testing.assert_array_equal(p, q)


def check(path, scratch):
    try:
        model = nncore.load(path)
    except (ModelFileError, OSError) as e:
        if not str(e).strip():
            return {"outcome": "bad-refusal", "detail": type(e).__name__ + " without a message"}
        return {"outcome": "refused", "detail": type(e).__name__ + ": " + str(e)[:200]}
    except BaseException as e:
        return {"outcome": "bad-refusal", "detail": type(e).__name__ + ": " + str(e)[:300]}
    try:
        bugs = known_bugs(path, model)
    except BaseException as e:
        bugs = ["inspect: " + repr(e)[:200]]
    try:
        usable(model, scratch)
    except BaseException as e:
        return {"outcome": "unusable", "bugs": bugs,
                "detail": type(e).__name__ + ": " + str(e)[:300]}
    return {"outcome": "compressed" if "compressed" in bugs else "loaded", "bugs": bugs}


scratch = sys.argv[1]
for line in sys.stdin:
    path = line.strip()
    if path == "!crash":                   # the harness's own test: a crash and a hang
        import os, signal
        os.kill(os.getpid(), signal.SIGSEGV)
    if path == "!hang":
        import time
        time.sleep(3600)
    if path:
        print(json.dumps([path, check(path, scratch)]), flush=True)
'''


def run_cases(paths, scratch, timeout=BATCH_TIMEOUT):
    """{path: report} for each path, loaded in child processes: a path whose child died
    by a signal gets outcome 'crash', one its child was still on at the timeout 'hang'."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    results, todo = {}, list(paths)
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, scratch], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        try:
            out, err = proc.communicate("\n".join(todo) + "\n", timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        for line in out.splitlines():
            path, report = json.loads(line)
            results[path] = report
        todo = [p for p in todo if p not in results]
        if not todo:
            break
        if timed_out:
            results[todo[0]] = {"outcome": "hang", "detail": f"still loading after {timeout} s"}
        elif proc.returncode < 0:
            results[todo[0]] = {"outcome": "crash", "detail": f"signal {-proc.returncode}: "
                                                               + err[-500:]}
        else:
            results[todo[0]] = {"outcome": "child-error", "detail": err[-1000:]}
        todo = todo[1:]
    return results


def run_parallel(paths, folder, n_children=2):
    """run_cases over n_children children at once (the list split in turn)."""
    import concurrent.futures as cf
    parts = [paths[i::n_children] for i in range(n_children)]
    with cf.ThreadPoolExecutor(n_children) as pool:
        futures = [pool.submit(run_cases, part, str(folder / f"scratch-{i}.npz"))
                   for i, part in enumerate(parts) if part]
        results = {}
        for f in futures:
            results.update(f.result())
    return results


# ---- valid models to mutate --------------------------------------------------------------

def _data(rng, n_in, n_out, loss, n=16):
    X = rng.standard_normal((n, n_in))
    if loss in ("softmax_cross_entropy", "hinge"):
        return X, rng.integers(0, n_out, n)
    if loss == "binary_cross_entropy":
        return X, (rng.random((n, n_out)) < 0.5).astype(float)
    return X, rng.standard_normal((n, n_out))


def seed_models():
    """(name, model) pairs covering the saved format's variants."""
    rng = np.random.default_rng(0)
    models = []
    m = MLP([3, 5, 3], seed=1)                                   # float32, SGD + momentum
    m.fit(*_data(rng, 3, 3, "softmax_cross_entropy"), loss="softmax_cross_entropy",
          optimizer=optim.SGD(lr=0.1, momentum=0.9), epochs=2, batch_size=4)
    models.append(("sgd-momentum-f32", m))
    m = MLP([4, 6, 2], "tanh", seed=2, dtype="float64")          # float64, Adam
    m.fit(*_data(rng, 4, 2, "mse"), loss="mse", optimizer=optim.Adam(lr=0.01), epochs=2,
          batch_size=4)
    models.append(("adam-f64", m))
    m = Sequential([Dense(3, 4, "relu", bias=False), Dense(4, 2, bias=False)],
                   seed=3)                                       # no biases, Adam, float32
    m.fit(*_data(rng, 3, 2, "binary_cross_entropy"), loss="binary_cross_entropy",
          optimizer=optim.Adam(lr=0.01, weight_decay=1e-3), epochs=1, batch_size=8)
    models.append(("adam-nobias-f32", m))
    m = Sequential([Dense(2, 3, "leaky_relu", slope=0.1), Dense(3, 3, bias=False)],
                   seed=4, dtype="float64", l2=1e-3)             # schedule, hinge, mixed bias
    m.fit(*_data(rng, 2, 3, "hinge"), loss="hinge",
          optimizer=optim.SGD(lr=0.05, schedule=optim.ExponentialDecay(0.9)), epochs=2)
    models.append(("sgd-schedule-f64", m))
    models.append(("unfitted-f32", MLP([2, 3, 1], seed=5)))     # no loss, no optimizer
    return models


SEED_NAMES = sorted(["sgd-momentum-f32", "adam-f64", "adam-nobias-f32", "sgd-schedule-f64",
                     "unfitted-f32"])


def _members(data):
    """[(ZipInfo, bytes)] of an archive, in order."""
    with zipfile.ZipFile(_io.BytesIO(data)) as z:
        return [(info, z.read(info)) for info in z.infolist()]


def _zip(members, compression=zipfile.ZIP_STORED, only=None):
    """An archive of (name, bytes) members, stored, or compressed (all, or those in only)."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, payload in members:
            kind = compression if only is None or name in only else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload,
                       compress_type=kind)
    return buf.getvalue()


def _npy_parts(payload):
    """(header dict, data bytes) of a .npy member (NumPy's own header reader)."""
    from numpy.lib import format as npy_format
    f = _io.BytesIO(payload)
    version = npy_format.read_magic(f)
    read = (npy_format.read_array_header_1_0 if version == (1, 0)
            else npy_format.read_array_header_2_0)
    shape, fortran, dtype = read(f)
    return ({"descr": npy_format.dtype_to_descr(dtype), "fortran_order": fortran,
             "shape": shape}, payload[f.tell():])


def _npy(header_text, data):
    """A version 1.0 .npy member with this header text (padded) and data."""
    text = header_text.encode("latin1")
    pad = (64 - (10 + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    if len(text) > 0xFFFF:
        return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + data
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _config_of(members):
    payload = dict(members)["config.npy"]
    return json.loads(np.load(_io.BytesIO(payload), allow_pickle=False).item())


def _with_config(members, config):
    text = np.array(json.dumps(config))
    buf = _io.BytesIO()
    np.save(buf, text, allow_pickle=False)
    return [(n, buf.getvalue() if n == "config.npy" else p) for n, p in members]


# ---- mutations: each takes (rng, seeds {name: bytes}, this seed's bytes) -> bytes -------

def bit_flips(rng, seeds, data):
    data = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def header_bit_flips(rng, seeds, data):
    """Flips within the first 128 bytes of one member (zip and .npy headers)."""
    with zipfile.ZipFile(_io.BytesIO(data)) as z:
        info = rng.choice(z.infolist())
    data = bytearray(data)
    for _ in range(rng.choice([1, 2, 3])):
        data[min(len(data) - 1, info.header_offset + rng.randrange(128))] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(rng, seeds, data):
    return data[:rng.randrange(len(data))]


def member_swap(rng, seeds, data):
    """One member's bytes replaced by a member (same or other name) of another file."""
    members = [(i.filename, p) for i, p in _members(data)]
    donor = [(i.filename, p) for i, p in _members(rng.choice(list(seeds.values())))]
    k = rng.randrange(len(members))
    same = [p for n, p in donor if n == members[k][0]]
    payload = rng.choice(same) if same and rng.random() < 0.5 else rng.choice(donor)[1]
    members[k] = (members[k][0], payload)
    if rng.random() < 0.2:                                 # or a donor member added
        name, payload = rng.choice(donor)
        if name not in dict(members):
            members.append((name, payload))
    return _zip(members)


def member_drop_or_rename(rng, seeds, data):
    members = [(i.filename, p) for i, p in _members(data)]
    k = rng.randrange(len(members))
    if rng.random() < 0.5:
        del members[k]
    else:
        members[k] = (rng.choice(["config.npy", "layers.9.weight.npy", "x.npy", "../evil.npy",
                                  "layers.0.weight", "optimizer.v.0.npy",
                                  "layers.0.weight.npy.npy", "/abs.npy"]), members[k][1])
    return _zip(members)


def recompress(rng, seeds, data):
    members = [(i.filename, p) for i, p in _members(data)]
    kind = rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
    only = None if rng.random() < 0.5 else {rng.choice(members)[0]}
    return _zip(members, kind, only)


def _json_values(rng):
    return rng.choice([None, True, False, 0, -1, 1, 2, 3, 2 ** 31, 2 ** 63, 2 ** 70, -2 ** 70,
                       0.5, -0.5, 1e308, -1e-308, 1e-320, "", "relu", "softmax", "float16",
                       "float32", "float64", "Adam", "SGD", "mse", "hinge", "nan", [], [1],
                       {}, {"type": "Adam"}, "x" * 1000, [[0, 1]] * 3])


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def json_mutation(rng, seeds, data):
    members = [(i.filename, p) for i, p in _members(data)]
    config = _config_of(members)
    for _ in range(rng.choice([1, 1, 2, 3])):
        paths = [p for p in _paths(config) if p]
        path = rng.choice(paths)
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent["extra_" + str(rng.randrange(10))] = _json_values(rng)
        elif action < 0.35 and isinstance(parent, list):
            parent.append(_json_values(rng))
        elif action < 0.45 and isinstance(parent[path[-1]], (int, float)) \
                and not isinstance(parent[path[-1]], bool):
            parent[path[-1]] = parent[path[-1]] * rng.choice([-1, 2, 1000, 10 ** 30, 0.5])
        else:
            parent[path[-1]] = _json_values(rng)
    if rng.random() < 0.05:                                 # not a JSON object at all
        config = rng.choice([[], "nncore-model", 1, None])
    return _zip(_with_config(members, config))


def json_text_mutation(rng, seeds, data):
    """The config member's text itself broken: bytes cut or replaced, NaN, deep nesting."""
    members = [(i.filename, p) for i, p in _members(data)]
    text = json.dumps(_config_of(members))
    choice = rng.random()
    if choice < 0.3:
        text = text[:rng.randrange(len(text))]
    elif choice < 0.5:
        text = text.replace("0.", "NaN", 1) if "0." in text else text + "x"
    elif choice < 0.6:
        text = "[" * 100000 + "]" * 100000
    elif choice < 0.8:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice(['"', "}", "{", "\\", "\x00", "\ud800", "1e999"]) + text[i + 1:]
    else:
        text = text.replace('"format_version": 1', '"format_version": 1, "format_version": 99')
    buf = _io.BytesIO()
    np.save(buf, np.array(text), allow_pickle=False)
    return _zip([(n, buf.getvalue() if n == "config.npy" else p) for n, p in members])


def npy_header_mutation(rng, seeds, data):
    members = [(i.filename, p) for i, p in _members(data)]
    k = rng.randrange(len(members))
    name, payload = members[k]
    header, body = _npy_parts(payload)
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    choice = rng.random()
    if choice < 0.3:
        descr = rng.choice(["<f4", "<f8", ">f4", ">f8", "<f2", "<i8", "|b1", "|O", "|V8",
                            "<c16", "<U1", "|S8", "<M8[s]", "[('a', '<f4')]", "<f16"])
    elif choice < 0.45:
        fortran = not fortran if rng.random() < 0.8 else "yes"
    elif choice < 0.75:
        shape = rng.choice([(), (0,), (-1,), (2 ** 62,), (2 ** 31, 2 ** 31), (1, 1, 1),
                            tuple(s + 1 for s in shape) if shape else (1,),
                            tuple(reversed(shape)), (10 ** 9, 3), shape + (1,)])
    elif choice < 0.9:
        text = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
        text = rng.choice([text[:len(text) // 2], text.replace("'shape'", "'shapes'"),
                           text.replace("}", ", 'extra': 1}"), "__import__('os')",
                           text + " " * 70000])
        members[k] = (name, _npy(text, body))
        return _zip(members)
    else:
        body = body[:rng.randrange(len(body) + 1)] if rng.random() < 0.7 else body + b"\0" * 64
    text = repr({"descr": descr if descr[:1] != "[" else eval(descr),  # noqa: S307
                 "fortran_order": fortran, "shape": shape})
    members[k] = (name, _npy(text, body))
    return _zip(members)


MUTATIONS = [bit_flips, header_bit_flips, truncate, member_swap, member_drop_or_rename,
             recompress, json_mutation, json_text_mutation, npy_header_mutation]


def make_cases(folder, n_cases, seed):
    """n_cases mutated files in folder (and the unmutated seeds); [(case id, path)]."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for name, model in seed_models():
        path = folder / f"seed-{name}.npz"
        model.save(path)
        seeds[name] = path.read_bytes()
    assert sorted(seeds) == SEED_NAMES
    cases = [(f"seed-{name}", str(folder / f"seed-{name}.npz")) for name in SEED_NAMES]
    rng = random.Random(seed)
    for i in range(n_cases):
        mutation = MUTATIONS[i % len(MUTATIONS)]
        name = SEED_NAMES[(i // len(MUTATIONS)) % len(SEED_NAMES)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # zipfile: "Duplicate name"
            data = mutation(rng, seeds, seeds[name])
        case = f"{i:04d}-{mutation.__name__}-{name}"
        path = folder / f"{case}.npz"
        path.write_bytes(data)
        cases.append((case, str(path)))
    return cases


# ---- running the cases once per session, then one test per case ---------------------------

_RUNS = {}


def _results(tmp_path_factory, kind):
    if kind not in _RUNS:
        n, seed = (DEFAULT_CASES, 12) if kind == "default" else (SLOW_CASES, 20261202)
        folder = tmp_path_factory.mktemp(f"hostile-{kind}")
        cases = make_cases(folder, n, seed)
        start = time.monotonic()
        reports = run_parallel([p for _, p in cases], folder)
        _RUNS[kind] = ({c: reports[p] for c, p in cases}, time.monotonic() - start)
    return _RUNS[kind][0]


def _assert_case(request, report):
    outcome = report["outcome"]
    known = [b for b in report.get("bugs", []) if b in BUGS]
    if known:
        request.applymarker(pytest.mark.xfail(strict=True, reason="; ".join(BUGS[b]
                                                                         for b in known)))
    assert outcome in ("refused", "loaded"), report
    assert not report.get("bugs"), report


def _case_ids(n):
    """The case ids make_cases gives (known before the files exist, for parametrize)."""
    return [f"seed-{name}" for name in SEED_NAMES] + [
        f"{i:04d}-{MUTATIONS[i % len(MUTATIONS)].__name__}-"
        f"{SEED_NAMES[(i // len(MUTATIONS)) % len(SEED_NAMES)]}" for i in range(n)]


@pytest.mark.parametrize("case", _case_ids(DEFAULT_CASES))
def test_fuzzed_file(case, request, tmp_path_factory):
    _assert_case(request, _results(tmp_path_factory, "default")[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", _case_ids(SLOW_CASES))
def test_fuzzed_file_slow(case, request, tmp_path_factory):
    _assert_case(request, _results(tmp_path_factory, "slow")[case])


def test_seeds_load_and_every_mutation_kind_is_refused_somewhere(tmp_path_factory):
    """The fuzzer exercises the loader: the seeds load, and each mutation kind makes
    files that are refused (a fuzzer whose files all load, or all fail the same way,
    would test nothing)."""
    results = _results(tmp_path_factory, "default")
    for case, report in results.items():
        if case.startswith("seed-"):
            assert report == {"outcome": "loaded", "bugs": []}, (case, report)
    for mutation in MUTATIONS:
        outcomes = {r["outcome"] for c, r in results.items() if f"-{mutation.__name__}-" in c}
        if mutation is not recompress:
            assert "refused" in outcomes, (mutation.__name__, outcomes)
    assert len({r.get("detail") for r in results.values() if r["outcome"] == "refused"}) > 30


def test_the_harness_reports_crashes_and_hangs(tmp_path):
    """A child killed by a signal, or still running at its timeout, is reported against
    the case it was on; the cases after it are still checked."""
    good = tmp_path / "good.npz"
    MLP([2, 3, 1], seed=0).save(good)
    reports = run_cases(["!crash", str(good), "!hang", str(good)], str(tmp_path / "s.npz"),
                        timeout=3)
    assert reports["!crash"]["outcome"] == "crash" and "signal 11" in reports["!crash"]["detail"]
    assert reports["!hang"]["outcome"] == "hang"
    assert reports[str(good)] == {"outcome": "loaded", "bugs": []}


# ---- fixed reproducers of the bugs the fuzzer finds ------------------------------------

@pytest.fixture(scope="module")
def adam_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile-adam") / "adam.npz"
    dict(seed_models())["adam-f64"].save(path)
    return [(i.filename, p) for i, p in _members(path.read_bytes())]


def _write(tmp_path, members, compression=zipfile.ZIP_STORED):
    path = tmp_path / "case.npz"
    path.write_bytes(_zip(members, compression))
    return path


def test_the_unmutated_file_loads(adam_file, tmp_path):
    model = nncore.load(_write(tmp_path, adam_file))
    assert model.optimizer.t == 8 and model.loss.name == "mse"


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA], ids=["deflate", "bzip2", "lzma"])
def test_compressed_members_are_refused(adam_file, tmp_path, compression):
    with pytest.raises(nncore.io.ModelFileError, match=r"compress"):
        nncore.load(_write(tmp_path, adam_file, compression))


def _npy_bytes(array, fortran=False):
    buf = _io.BytesIO()
    np.save(buf, np.asfortranarray(array) if fortran else array, allow_pickle=False)
    return buf.getvalue()


def test_adam_state_with_negative_v_is_refused(adam_file, tmp_path):
    v = np.load(_io.BytesIO(dict(adam_file)["optimizer.v.0.npy"]))
    members = [(n, _npy_bytes(-v - 1e-3) if n == "optimizer.v.0.npy" else p)
               for n, p in adam_file]
    with pytest.raises(nncore.io.ModelFileError, match=r"optimizer\.v\.0"):
        nncore.load(_write(tmp_path, members))


def test_adam_step_count_beyond_a_c_long_is_refused(adam_file, tmp_path):
    config = _config_of(adam_file)
    config["optimizer"]["t"] = 2 ** 70
    with pytest.raises(nncore.io.ModelFileError, match=r"\bt\b"):
        nncore.load(_write(tmp_path, _with_config(adam_file, config)))


def test_loss_that_does_not_fit_the_last_activation_is_refused(adam_file, tmp_path):
    config = _config_of(adam_file)
    config["loss"] = "hinge"
    config["layers"][-1]["activation"] = "softmax"
    with pytest.raises(nncore.io.ModelFileError, match=r"loss"):
        nncore.load(_write(tmp_path, _with_config(adam_file, config)))


def test_fortran_ordered_state_loads_usable_or_is_refused(adam_file, tmp_path):
    m = np.load(_io.BytesIO(dict(adam_file)["optimizer.m.0.npy"]))
    members = [(n, _npy_bytes(m, fortran=True) if n == "optimizer.m.0.npy" else p)
               for n, p in adam_file]
    try:
        model = nncore.load(_write(tmp_path, members))
    except nncore.io.ModelFileError:
        return
    X = np.random.default_rng(0).standard_normal((8, 4))
    model.fit(X, np.zeros((8, 2)), epochs=1, batch_size=4)
