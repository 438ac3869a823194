"""The command line (nncore.cli): called in-process through main([...]) with capsys,
and through `python -m nncore` in a subprocess for the exit status and stderr."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nncore as nn
from nncore import cli

from conftest import tiny_mnist


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `nncore argv...`."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, match, code=None):
    assert status != 0 if code is None else status == code
    assert err.startswith("nncore: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err), err


@pytest.fixture
def moons_model(tmp_path, capsys):
    path = tmp_path / "moons.npz"
    status, out, _ = run(capsys, "train", "--data", "moons", "--layers", "2,16,2",
                         "--epochs", "20", "--validation-split", "0.2", "--save", path)
    assert status == 0
    return path, out


# ---- train, evaluate, info ----------------------------------------------------------

def test_train_prints_progress_and_final_accuracy(moons_model):
    path, out = moons_model
    assert "2-16-2 relu network, 82 parameters, float32" in out
    assert "moons: 500 samples, 2 features, 2 classes (400 to train on, 100 held out)" in out
    assert re.search(r"^epoch 1/20  loss [\d.]+  accuracy [\d.]+  val_loss", out, re.M)
    assert "epoch 20/20" in out
    assert re.search(r"^train      loss [\d.]+, accuracy [\d.]+%$", out, re.M)
    assert float(re.search(r"^validation loss [\d.]+, accuracy ([\d.]+)%$", out,
                           re.M).group(1)) > 85
    assert f"saved {path}" in out
    model = nn.load(path)
    assert [layer.n_out for layer in model.layers] == [16, 2]
    assert model.optimizer.epoch == 20


def test_evaluate_finds_the_held_out_part_again(moons_model, capsys):
    path, train_out = moons_model
    status, out, _ = run(capsys, "evaluate", path, "--data", "moons",
                         "--validation-split", "0.2")
    assert status == 0
    validation = re.search(r"^validation (loss .*)$", train_out, re.M).group(1)
    assert out.splitlines()[-1] == validation
    status, out, _ = run(capsys, "evaluate", path, "--data", "moons", "--seed", "1")
    assert status == 0 and "moons: 500 samples" in out
    assert float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 85


def test_info(moons_model, capsys):
    path, _ = moons_model
    status, out, _ = run(capsys, "info", path)
    assert status == 0
    assert "nncore-model version 1" in out
    assert "architecture  2-16-2" in out
    assert re.search(r"layer 0\s+2 -> 16\s+relu\s+48 parameters", out)
    assert re.search(r"layer 1\s+16 -> 2\s+identity\s+34 parameters", out)
    assert "parameters    82" in out
    assert "dtype         float32" in out
    assert "loss          softmax_cross_entropy" in out
    assert "optimizer     SGD(lr=0.1, momentum=0.9" in out and "20 epochs trained" in out


def test_train_adam_float64_quiet_sine_regression(tmp_path, capsys):
    path = tmp_path / "sine.npz"
    status, out, _ = run(capsys, "train", "--data", "sine", "--samples", "200", "--activation",
                         "tanh", "--optimizer", "adam", "--lr", "0.01", "--epochs", "30",
                         "--dtype", "float64", "--threads", "1", "-q", "--save", path)
    assert status == 0
    assert "1-64-1 tanh network" in out and "mse, Adam(lr=0.01" in out
    assert "epoch 1/30" not in out
    assert float(re.search(r"^train      loss ([\d.]+)$", out, re.M).group(1)) < 0.1
    model = nn.load(path)
    assert model.dtype == np.float64 and model.loss.name == "mse"


def test_train_on_a_csv_file_with_a_named_target(tmp_path, capsys):
    X, y = nn.datasets.circles(200, seed=0)
    path = tmp_path / "circles.csv"
    np.savetxt(path, np.column_stack([y, X]), delimiter=",", header="label,a,b",
               comments="", fmt=["%d", "%.6f", "%.6f"])
    status, out, _ = run(capsys, "train", "--data", f"csv:{path}", "--target", "label",
                         "--epochs", "40", "--lr", "0.3", "-q")
    assert status == 0
    assert "200 samples, 2 features, 2 classes" in out
    assert float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 90


def test_train_and_evaluate_mnist_idx_files(tmp_path, capsys):
    tiny_mnist(tmp_path, "train", n=20, gz=True)
    tiny_mnist(tmp_path, "t10k", n=7, seed=1)
    model = tmp_path / "m.npz"
    status, out, _ = run(capsys, "train", "--data", f"mnist:{tmp_path}", "--layers", "784,10",
                         "--epochs", "2", "-q", "--save", model)
    assert status == 0 and "20 samples, 784 features" in out
    status, out, _ = run(capsys, "evaluate", model, "--data", f"mnist:{tmp_path}")
    assert status == 0 and "MNIST t10k" in out and "7 samples" in out


# ---- predict ------------------------------------------------------------------------

def test_predict_csv_and_npy(moons_model, tmp_path, capsys):
    path, _ = moons_model
    model = nn.load(path)
    X, _ = nn.datasets.moons(30, seed=5)
    expected = model.predict(X)
    np.savetxt(tmp_path / "in.csv", X, delimiter=",", header="a,b", comments="")
    np.save(tmp_path / "in.npy", X)

    status, out, _ = run(capsys, "predict", path, "--input", tmp_path / "in.csv",
                         "--output", tmp_path / "out.csv")
    assert status == 0 and "wrote 30 predictions" in out
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "label"
    np.testing.assert_array_equal([int(v) for v in lines[1:]],
                                  model.predict(np.loadtxt(tmp_path / "in.csv", delimiter=",",
                                                           skiprows=1)))
    status, _, _ = run(capsys, "predict", path, "--input", tmp_path / "in.npy",
                       "--output", tmp_path / "out.npy")
    assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)

    status, out, _ = run(capsys, "predict", path, "--input", tmp_path / "in.npy", "--proba")
    rows = out.splitlines()
    assert status == 0 and rows[0] == "p0,p1" and len(rows) == 31
    p = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(p.argmax(1), expected)


# ---- config, bench, demo, help -------------------------------------------------------

def test_config(capsys):
    status, out, _ = run(capsys, "config")
    assert status == 0 and f"version: {nn.__version__}" in out and "openmp:" in out


def test_help_and_version(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "train" in out and "demo" in out
    status, out, _ = run(capsys, "train", "--help")
    assert status == 0 and "--validation-split" in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and nn.__version__ in out


def test_bench_without_the_script_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli, "bench_script", lambda: None)
    status, _, err = run(capsys, "bench")
    assert_one_line_error(status, err, "no bench/train.py next to the nncore sources", 1)


def test_bench_runs_the_script_with_quick(monkeypatch, tmp_path, capfd):
    script = tmp_path / "train.py"
    script.write_text("import sys; print('bench args', sys.argv[1:])\n")
    monkeypatch.setattr(cli, "bench_script", lambda: str(script))
    assert cli.main(["bench"]) == 0
    assert "bench args ['--quick']" in capfd.readouterr().out
    assert cli.main(["bench", "--threads", "1,2"]) == 0
    assert "bench args ['--threads', '1,2', '--quick']" in capfd.readouterr().out


def test_demo_trains_the_digit_network(capsys):
    status, out, _ = run(capsys, "demo", "--threads", "1")
    assert status == 0
    assert "64-16-16-10 digit network" in out
    assert "1348 to learn from, 449 held out" in out
    assert float(re.search(r"held-out accuracy ([\d.]+)%", out).group(1)) >= 90
    assert re.search(r"training loss .* \(log scale\) \S{50}$", out, re.M)
    assert "guess " in out


def test_demo_without_scikit_learn():
    """The demo trains on the digits nncore ships, in an interpreter that cannot
    import scikit-learn."""
    code = """if True:
        import sys
        sys.modules["sklearn"] = None             # as if it were not installed
        from nncore import cli
        status = cli.main(["demo", "--epochs", "50"])
        assert not [m for m in sys.modules if m.startswith("sklearn.")]
        sys.exit(status)
        """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8x8 handwritten digits: 1348 to learn from" in run.stdout
    assert float(re.search(r"held-out accuracy ([\d.]+)%", run.stdout).group(1)) >= 90


def test_sparkline():
    assert cli.sparkline([1.0, 0.1, 0.01], blocks="abc") == "cba"
    assert cli.sparkline([]) == ""
    assert len(cli.sparkline(np.linspace(2, 1, 1000), width=60)) <= 60
    assert cli.sparkline([0.5, 0.5], blocks="ab") == "aa"


# ---- errors: one line on stderr, no traceback ------------------------------------------

@pytest.mark.parametrize("argv, match, code", [
    ([], "choose a command", 2),
    (["fly"], "invalid choice: 'fly'", 2),
    (["train"], "the following arguments are required: --data", 2),
    (["train", "--data", "nope"], "unknown data set 'nope'; choose spiral", 2),
    (["train", "--data", "xor", "--lr", "-1"], r"argument --lr: expected a number > 0", 2),
    (["train", "--data", "xor", "--epochs", "0"], "argument --epochs: expected an int >= 1", 2),
    (["train", "--data", "xor", "--layers", "2,x,2"], "argument --layers: expected layer sizes",
     2),
    (["train", "--data", "xor", "--layers", "3,8,2"], "starts with 3 inputs but the data has 2",
     2),
    (["train", "--data", "spiral", "--layers", "2,8,2"], "ends with 2 outputs but the data has 3 "
                                                         "classes", 2),
    (["train", "--data", "sine", "--loss", "hinge"], "needs class labels", 2),
    (["train", "--data", "xor", "--optimizer", "adam", "--momentum", "0.5"],
     "--momentum applies to --optimizer sgd or rmsprop", 2),
    (["train", "--data", "xor", "--samples", "10"], "--samples applies to", 2),
    (["train", "--data", "xor", "--target", "1"], "--target applies to csv", 2),
    (["train", "--data", "xor", "--validation-split", "1.5"], "argument --validation-split", 2),
    (["train", "--data", "xor", "--validation-split", "0.1"], "leaves 4 training and 0 test", 2),
    (["train", "--data", "xor", "--save", "/nonexistent/dir/m.npz"], "folder .* does not exist",
     2),
    (["train", "--data", "csv:/nonexistent.csv"], "/nonexistent.csv: No such file", 1),
    (["train", "--data", "mnist:/nonexistent"], "MNIST folder '/nonexistent' does not exist", 1),
    (["train", "--data", "mnist:"], "needs the folder", 2),
    (["evaluate", "/nonexistent.npz", "--data", "xor"], "/nonexistent.npz: No such file", 1),
    (["info", "/nonexistent.npz"], "No such file", 1),
])
def test_bad_commands_give_one_line(capsys, argv, match, code):
    status, out, err = run(capsys, *argv)
    assert_one_line_error(status, err, match, code)


def test_bad_files_give_one_line(tmp_path, capsys, moons_model):
    model, _ = moons_model
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a model")
    status, _, err = run(capsys, "info", garbage)
    assert_one_line_error(status, err, r"garbage.npz: not an nncore model file", 1)
    status, _, err = run(capsys, "predict", garbage, "--input", "x.csv")
    assert_one_line_error(status, err, "not an nncore model file", 1)

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    status, _, err = run(capsys, "train", "--data", f"csv:{bad_csv}")
    assert_one_line_error(status, err, r"bad.csv, line 3, column 2: 'oops' is not a number", 1)
    status, _, err = run(capsys, "predict", model, "--input", bad_csv)
    assert_one_line_error(status, err, r"line 3, column 2", 1)

    wide = tmp_path / "wide.csv"
    wide.write_text("1,2,3\n")
    status, _, err = run(capsys, "predict", model, "--input", wide)
    assert_one_line_error(status, err, "3 features per row, but the model takes 2", 2)
    status, _, err = run(capsys, "predict", model, "--input", tmp_path / "x.txt")
    assert_one_line_error(status, err, "must be a .csv or .npy file", 2)
    status, _, err = run(capsys, "predict", model, "--input", wide, "--output", "o.json")
    assert_one_line_error(status, err, "must end in .csv or .npy", 2)
    status, _, err = run(capsys, "predict", model, "--input", tmp_path / "none.npy")
    assert_one_line_error(status, err, "none.npy: No such file", 1)
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"\x93NUMPY garbage")
    status, _, err = run(capsys, "predict", model, "--input", broken)
    assert_one_line_error(status, err, "broken.npy: cannot read it as a .npy array", 1)


def test_train_refuses_targets_that_are_not_labels_from_0(tmp_path, capsys):
    path = tmp_path / "signs.csv"
    path.write_text("1,2,-1\n3,4,1\n")
    status, _, err = run(capsys, "train", "--data", f"csv:{path}")
    assert_one_line_error(status, err, "class labels must run from 0, but the data holds -1", 2)
    path.write_text("1,2,250000\n3,4,180000\n")
    status, _, err = run(capsys, "train", "--data", f"csv:{path}")
    assert_one_line_error(status, err, "makes 250001 classes; pass --loss mse", 2)
    status, out, _ = run(capsys, "train", "--data", f"csv:{path}", "--loss", "mse", "-q",
                         "--epochs", "1", "--lr", "1e-12")
    assert status == 0 and "2-64-1 relu network" in out


def test_evaluate_refuses_data_the_model_does_not_fit(moons_model, capsys):
    model, _ = moons_model
    status, _, err = run(capsys, "evaluate", model, "--data", "sine")
    assert_one_line_error(status, err, "the data has 1 feature but the model takes 2", 2)


def test_nncore_traceback_shows_the_exception(monkeypatch, capsys):
    monkeypatch.setenv("NNCORE_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["info", "/nonexistent.npz"])


# ---- as a program ----------------------------------------------------------------------

def python_m(*argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("NNCORE_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "nncore", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_python_m_nncore_runs_the_cli():
    proc = python_m("config")
    assert proc.returncode == 0 and "openmp:" in proc.stdout


def test_python_m_nncore_errors_are_one_line_on_stderr(tmp_path):
    proc = python_m("train", "--data", "spiral", "--epochs", "many")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("nncore: error: argument --epochs: expected an int >= 1, got 'many' "
                           "(see 'nncore train --help')\n")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    proc = python_m("info", bad)
    assert proc.returncode == 1
    assert proc.stderr.startswith("nncore: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_bench_stays_quick_unless_full(monkeypatch, tmp_path, capfd):
    script = tmp_path / "train.py"
    script.write_text("import sys; print('bench args', sys.argv[1:])\n")
    monkeypatch.setattr(cli, "bench_script", lambda: str(script))
    assert cli.main(["bench", "--workloads", "W3"]) == 0
    assert "bench args ['--workloads', 'W3', '--quick']" in capfd.readouterr().out
    assert cli.main(["bench", "--full", "--threads", "1"]) == 0
    assert "bench args ['--threads', '1']" in capfd.readouterr().out
