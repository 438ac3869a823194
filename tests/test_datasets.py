"""nncore.datasets: the generated sets, digits, MNIST IDX files, CSV files and the tools
(train_test_split, one_hot, Standardizer). Everything offline: the IDX and CSV files
are written here, in tmp_path."""
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nncore as nn
from nncore import datasets

from conftest import idx_bytes, tiny_mnist, write_idx


# ---- generated ----------------------------------------------------------------

@pytest.mark.parametrize("make", [datasets.moons, datasets.circles])
def test_two_class_sets_shapes_balance_and_seed(make):
    X, y = make(101, seed=3)
    assert X.shape == (101, 2) and X.dtype == np.float64
    assert y.shape == (101,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [51, 50]
    X2, y2 = make(101, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make(101, seed=4)
    assert not np.array_equal(X, X3)
    assert 0 < y[:50].sum() < 50                   # shuffled, not ordered by class
    assert make(10, dtype=np.float32)[0].dtype == np.float32


def test_moons_without_noise_lie_on_their_half_circles():
    X, y = datasets.moons(40, noise=0.0)
    upper, lower = X[y == 0], X[y == 1]
    # class 0: (cos t, sin t), t in [0, pi]: radius 1 around (0, 0), y >= 0
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, rtol=1e-12)
    assert (upper[:, 1] >= -1e-12).all()
    # class 1: (1 - cos t, 1/2 - sin t): radius 1 around (1, 1/2), y <= 1/2
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0, rtol=1e-12)
    assert (lower[:, 1] <= 0.5 + 1e-12).all()


def test_circles_without_noise_have_radii_one_and_factor():
    X, y = datasets.circles(30, noise=0.0, factor=0.3)
    np.testing.assert_allclose(np.hypot(*X[y == 0].T), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.hypot(*X[y == 1].T), 0.3, rtol=1e-12)


def test_sine():
    X, y = datasets.sine(50, noise=0.0, seed=1)
    assert X.shape == y.shape == (50, 1)
    assert (np.abs(X) <= np.pi).all()
    np.testing.assert_allclose(y, np.sin(X), rtol=1e-12)
    _, noisy = datasets.sine(50, noise=0.1, seed=1)
    assert 0 < np.abs(noisy - y).max() < 1


@pytest.mark.parametrize("call, match", [
    (lambda: datasets.moons(1), "n must be >= 2"),
    (lambda: datasets.moons(10, noise=-1), "noise"),
    (lambda: datasets.circles(10, factor=1.0), "factor"),
    (lambda: datasets.circles(10, factor=0), "factor"),
    (lambda: datasets.sine(0), "n must be >= 1"),
])
def test_generators_refuse_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_moons_are_learnable():
    X, y = datasets.moons(300, noise=0.1, seed=0)
    model = nn.MLP([2, 16, 2], "tanh", seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=nn.optim.Adam(lr=0.02),
              epochs=40, batch_size=32)
    assert model.evaluate(X, y)["accuracy"] > 0.95


# ---- digits -------------------------------------------------------------------

def test_digits():
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(X * 16, np.round(X * 16))           # the 17 gray levels 0..16
    assert y.dtype == np.int64
    # images per digit 0..9 in the UCI test set
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert y[:10].tolist() == list(range(10))
    assert (X[0] * 16).astype(int).tolist()[:16] == [0, 0, 5, 13, 9, 1, 0, 0,
                                                     0, 0, 13, 15, 10, 15, 5, 0]
    assert int((X * 16).sum()) == 561718
    X32, y32 = datasets.digits(dtype=np.float32)
    assert X32.dtype == np.float32 and np.array_equal(X32, X) and np.array_equal(y32, y)


def test_digits_same_as_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X_sk, y_sk = sklearn_datasets.load_digits(return_X_y=True)
    X, y = datasets.digits()
    assert np.array_equal(X, X_sk / 16.0)
    assert np.array_equal(y, y_sk)


def test_digits_without_scikit_learn():
    """digits() reads the file nncore ships with NumPy alone (a fresh interpreter in
    which scikit-learn cannot be imported)."""
    code = """if True:
        import sys
        sys.modules["sklearn"] = None             # as if it were not installed
        from nncore import datasets
        X, y = datasets.digits()
        assert not [m for m in sys.modules if m.startswith("sklearn.")]
        print(X.shape, y.shape, sorted(set(y.tolist())))
        """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "(1797, 64) (1797,) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"


def test_digits_refuses_a_damaged_file(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    with gzip.open(tmp_path / "data" / datasets.DIGITS_FILE, "wt") as f:
        f.write("0,1,2\n3,4,5\n")                               # not 1797 x 65
    monkeypatch.setattr(datasets, "_data_file", lambda name: tmp_path / "data" / name)
    with pytest.raises(ValueError, match="not the 8x8 digits file"):
        datasets.digits()


# ---- MNIST IDX files ------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("kind", ["train", "t10k"])
def test_load_mnist_reads_idx_files(tmp_path, gz, kind):
    pixels, labels, _, _ = tiny_mnist(tmp_path, kind, n=5, gz=gz)
    X, y = datasets.load_mnist(tmp_path, kind)
    assert X.shape == (5, 784) and X.dtype == np.float32
    assert y.shape == (5,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X, pixels.reshape(5, 784).astype(np.float32) / 255)
    assert X[0, 0] == 0.0 and X[0, 1] == 1.0


def test_load_mnist_test_alias_dot_names_and_dtype(tmp_path):
    pixels, labels, images, label_file = tiny_mnist(tmp_path, "t10k", n=2)
    os.rename(images, tmp_path / "t10k-images.idx3-ubyte")        # some mirrors' names
    X, y = datasets.load_mnist(str(tmp_path), "test", dtype=np.float64)
    assert X.dtype == np.float64 and X.shape == (2, 784)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_other_image_sizes(tmp_path):
    pixels, _, _, _ = tiny_mnist(tmp_path, n=4, rows=3, cols=2)
    X, _ = datasets.load_mnist(tmp_path)
    np.testing.assert_array_equal(X * 255, pixels.reshape(4, 6))


def test_load_mnist_missing_folder_files_and_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path)
    tiny_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="no train labels file"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, "validation")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("damage, which, match", [
    ("truncate", "images", "the file is truncated"),
    ("extend", "images", "longer than its header says"),
    ("truncate", "labels", "the file is truncated"),
    ("header", "images", "ends inside its header"),
    ("swap", "images", r"magic number 2049 \(a label file\), expected 2051"),
    ("swap", "labels", r"magic number 2051 \(an image file\), expected 2049"),
    ("magic", "images", "magic number 1234, expected 2051"),
    ("tiny", "labels", "too short for an IDX file"),
    ("count", "labels", "holds 3 images but .* holds 2 labels"),
])
def test_load_mnist_refuses_damaged_files(tmp_path, gz, damage, which, match):
    pixels, labels, images, label_file = tiny_mnist(tmp_path, gz=gz)
    image_bytes = idx_bytes(2051, (3, 28, 28), pixels.tobytes())
    label_bytes = idx_bytes(2049, (3,), labels.tobytes())
    content = {"images": image_bytes, "labels": label_bytes}
    other = {"images": label_bytes, "labels": image_bytes}
    new = {"truncate": content[which][:-1], "extend": content[which] + b"\0",
           "header": content[which][:10], "swap": other[which],
           "magic": (1234).to_bytes(4, "big") + content[which][4:], "tiny": b"\0\0",
           "count": idx_bytes(2049, (2,), labels[:2].tobytes())}[damage]
    target = images if which == "images" else label_file
    write_idx(tmp_path / os.path.basename(target).replace(".gz", ""), new, gz)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_mnist(tmp_path)
    assert os.path.basename(target) in str(info.value)


def test_load_mnist_refuses_a_broken_gzip_stream(tmp_path):
    _, _, images, _ = tiny_mnist(tmp_path, gz=True)
    data = open(images, "rb").read()
    with open(images, "wb") as f:
        f.write(data[:len(data) // 2])                  # cut inside the deflate stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: not a readable gzip"):
        datasets.load_mnist(tmp_path)
    with open(images, "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(ValueError, match="not a readable gzip"):
        datasets.load_mnist(tmp_path)


# ---- CSV --------------------------------------------------------------------------

def csv_file(tmp_path, text, name="data.csv", mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_load_csv_with_header_target_last(tmp_path):
    path = csv_file(tmp_path, "x1,x2,label\n1,2,0\n3.5,-4,1\n5,6e1,2\n")
    X, y = datasets.load_csv(path)
    np.testing.assert_array_equal(X, [[1, 2], [3.5, -4], [5, 60]])
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(y, [0, 1, 2])
    assert y.dtype == np.int64                     # whole numbers: class labels


@pytest.mark.parametrize("target", [0, -3, "x1"])
def test_load_csv_target_by_index_or_name(tmp_path, target):
    path = csv_file(tmp_path, "x1,x2,label\n1,2,0\n3,4,1\n")
    X, y = datasets.load_csv(path, target=target)
    np.testing.assert_array_equal(X, [[2, 0], [4, 1]])
    np.testing.assert_array_equal(y, [1, 3])


def test_load_csv_without_header_float_target_and_no_target(tmp_path):
    path = csv_file(tmp_path, "1,2,0.5\n3,4,1.5\n")
    X, y = datasets.load_csv(path)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5])
    X, none = datasets.load_csv(path, target=None, dtype=np.float32)
    assert none is None and X.dtype == np.float32 and X.shape == (2, 3)
    _, y = datasets.load_csv(csv_file(tmp_path, "1,2\n3,4\n"), target_dtype=np.float32)
    assert y.dtype == np.float32


@pytest.mark.parametrize("big", ["1e19", "-1e19", "9223372036854775808", "-9.3e18"])
def test_load_csv_whole_targets_beyond_int64_stay_floats(tmp_path, big):
    """Whole numbers become int64 labels only when every one fits int64: 1e19 cast to
    int64 would be INT64_MIN. (2**63 itself does not fit; -2**63 does.)"""
    _, y = datasets.load_csv(csv_file(tmp_path, f"1,2,{big}\n3,4,2\n"))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [float(big), 2.0])
    _, y = datasets.load_csv(csv_file(tmp_path, "1,2,-9223372036854775808\n3,4,2\n",
                                      "fits.csv"))
    assert y.dtype == np.int64 and y[0] == np.iinfo(np.int64).min
    with pytest.raises(ValueError, match=re.escape(f"target_dtype=int64 cannot hold the "
                                                   f"target {float(big):.17g} (column 3)")):
        datasets.load_csv(csv_file(tmp_path, f"1,2,{big}\n3,4,2\n"), target_dtype=np.int64)
    with pytest.raises(ValueError, match="target_dtype=uint8 cannot hold the target 300"):
        datasets.load_csv(csv_file(tmp_path, "1,300\n"), target_dtype="uint8")


def test_load_csv_skips_blank_and_comment_lines_and_reads_quotes_bom_spaces(tmp_path):
    text = "\ufeff# a comment\na,b\n\n   \n\"1\", 2 \n  # another\n3,4\n"
    X, y = datasets.load_csv(csv_file(tmp_path, text))
    np.testing.assert_array_equal(X, [[1], [3]])
    np.testing.assert_array_equal(y, [2, 4])


def test_load_csv_delimiter_and_forced_header(tmp_path):
    path = csv_file(tmp_path, "10;20\n1;2\n3;4\n")
    X, y = datasets.load_csv(path, delimiter=";", header=True)
    np.testing.assert_array_equal(y, [2, 4])
    X, y = datasets.load_csv(path, delimiter=";")          # "auto": numbers are data
    np.testing.assert_array_equal(y, [20, 2, 4])


@pytest.mark.parametrize("text, match", [
    ("a,b,c\n1,2,3\n4,5\n6,7,8\n", r"line 3: 2 fields, but line 2 has 3"),
    ("1,2,3\n4,5,6,7\n", r"line 2: 4 fields, but line 1 has 3"),
    ("a,b\n1,2\n\n3,x\n", r"line 4, column 2: 'x' is not a number"),
    ("1,2\n3,\n", r"line 2, column 2: empty cell"),
    ("1,2\n3,nan\n", r"line 2, column 2: 'nan' is not a finite number"),
    ("1,2\n-inf,4\n", r"line 2, column 1: '-inf' is not a finite number"),
    ("", "holds no rows"),
    ("# only a comment\n\n", "holds no rows"),
    ("a,b\n", "a header but no data rows"),
    ("a,b,c\n1,2\n", "the header names 3 columns, the rows have 2"),
])
def test_load_csv_refuses_malformed_files_with_line_numbers(tmp_path, text, match):
    path = csv_file(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_csv(path)
    assert str(path) in str(info.value)


IRIS_LIKE = ("sepal,petal,species\n5.1,3.5,setosa\n4.9,3.0,setosa\n"
             "6.3,3.3,virginica\n5.8,2.7,versicolor\n")


def test_load_csv_text_class_column(tmp_path):
    path = csv_file(tmp_path, IRIS_LIKE)
    X, y, classes = datasets.load_csv(path, return_classes=True)
    np.testing.assert_array_equal(X, [[5.1, 3.5], [4.9, 3.0], [6.3, 3.3], [5.8, 2.7]])
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(classes, ["setosa", "versicolor", "virginica"])
    np.testing.assert_array_equal(y, [0, 0, 2, 1])                 # sorted names
    assert y.dtype == np.int64
    np.testing.assert_array_equal(classes[y], ["setosa", "setosa", "virginica", "versicolor"])
    X2, y2 = datasets.load_csv(path, target="species", dtype=np.float32)   # names: a pair
    assert X2.dtype == np.float32
    np.testing.assert_array_equal(y2, y)
    # first column, no header, quoted names with the delimiter inside
    path = csv_file(tmp_path, '"New York, NY",1,2\nParis,3,4\n"New York, NY",5,6\n', "c.csv")
    X, y, classes = datasets.load_csv(path, target=0, return_classes=True)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(classes[y], ["New York, NY", "Paris", "New York, NY"])
    # numeric targets: no names
    _, y, none = datasets.load_csv(csv_file(tmp_path, "1,2,0\n3,4,1\n", "n.csv"),
                                   return_classes=True)
    assert none is None and y.dtype == np.int64
    _, none, no_names = datasets.load_csv(csv_file(tmp_path, "1,2\n", "x.csv"), target=None,
                                          return_classes=True)
    assert none is None and no_names is None


@pytest.mark.parametrize("text, match", [
    ("a,b,label\n1,2,cat\n3,4,\n", r"line 3, column 3: empty cell \(the class name is "
                                     r"missing\)"),
    ("a,b,label\n1,,cat\n", r"line 2, column 2: empty cell \(a missing value\)"),
    ("1,x,cat\n", r"line 1, column 2: 'x' is not a number"),
    ("1,inf,cat\n", r"line 1, column 2: 'inf' is not a finite number"),
    ("1,2,cat\n3,dog\n", r"line 2: 2 fields, but line 1 has 3"),
    ("a,b\n1,2,cat\n", r"line 1: the header names 2 columns, the rows have 3"),
    # numbers and text in the target column: a typo, not class names
    ("1,2,cat\n3,4,5\n", r"line 1, column 3: 'cat' is not a number, and line 2 holds "
                          r"the number '5'"),
])
def test_load_csv_text_class_column_refuses_missing_cells_with_line_and_column(
        tmp_path, text, match):
    path = csv_file(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_csv(path)
    assert str(path) in str(info.value)


def test_load_csv_refuses_binary_files_and_bad_targets(tmp_path):
    with pytest.raises(ValueError, match="not a text"):
        datasets.load_csv(csv_file(tmp_path, b"\x00\xff\xfe\x01", mode="wb"))
    with pytest.raises(ValueError, match="not a text"):
        datasets.load_csv(csv_file(tmp_path, b"1,2\n3,4\n\xff,1\n", mode="wb"))
    path = csv_file(tmp_path, "1,2\n3,4\n")
    with pytest.raises(ValueError, match="target column 2 does not exist"):
        datasets.load_csv(path, target=2)
    with pytest.raises(ValueError, match="no header"):
        datasets.load_csv(path, target="label")
    with pytest.raises(ValueError, match="no column named 'z'"):
        datasets.load_csv(csv_file(tmp_path, "a,b\n1,2\n", "h.csv"), target="z")
    with pytest.raises(ValueError, match="nothing left for the features"):
        datasets.load_csv(csv_file(tmp_path, "1\n2\n", "one.csv"))
    with pytest.raises(FileNotFoundError):
        datasets.load_csv(tmp_path / "missing.csv")


# ---- tools --------------------------------------------------------------------------

def test_train_test_split_partitions_the_rows():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, 0.3, seed=1)
    assert X_tr.shape == (7, 2) and X_te.shape == (3, 2)
    np.testing.assert_array_equal(X_tr[:, 0] // 2, y_tr)             # rows stay paired
    assert sorted(y_tr.tolist() + y_te.tolist()) == list(range(10))
    again = datasets.split(X, y, 0.3, seed=1)
    for a, b in zip((X_tr, X_te, y_tr, y_te), again):
        np.testing.assert_array_equal(a, b)
    _, _, _, other = datasets.train_test_split(X, y, 3, seed=2)
    assert other.shape == (3,)
    _, X_te, _, y_te = datasets.train_test_split(X, y, 0.2, shuffle=False)
    np.testing.assert_array_equal(y_te, [8, 9])


def test_train_test_split_stratified_keeps_class_shares():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    X = np.zeros((100, 1))
    _, _, y_tr, y_te = datasets.train_test_split(X, y, 0.2, seed=0, stratify=True)
    assert np.bincount(y_te).tolist() == [10, 6, 4]
    assert np.bincount(y_tr).tolist() == [40, 24, 16]


@pytest.mark.parametrize("size", [0.0, 1.0, 0, 10, 1.5, -0.1])
def test_train_test_split_refuses_empty_parts(size):
    with pytest.raises(ValueError, match="test_size"):
        datasets.train_test_split(np.zeros((10, 1)), np.zeros(10), size)


def test_train_test_split_refuses_mismatched_rows():
    with pytest.raises(ValueError, match="same number of rows"):
        datasets.train_test_split(np.zeros((10, 1)), np.zeros(9))


def test_one_hot():
    T = datasets.one_hot(np.array([2, 0, 1, 2]))
    np.testing.assert_array_equal(T, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert datasets.one_hot([1], n_classes=4, dtype=np.float32).tolist() == [[0, 1, 0, 0]]
    assert datasets.one_hot(np.array([], dtype=int), 3).shape == (0, 3)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        datasets.one_hot([0, 2], n_classes=2)
    with pytest.raises(ValueError, match="integer class labels"):
        datasets.one_hot([0.5, 1.0])


def test_standardizer_hand_worked():
    X = np.array([[1.0, 5.0, 2.0],
                  [3.0, 5.0, 4.0],
                  [5.0, 5.0, 9.0]])
    s = datasets.Standardizer().fit(X)
    # column 0: mean 3, std sqrt(((-2)^2 + 0 + 2^2) / 3) = sqrt(8/3)
    # column 1: constant 5 -> std 0, scale 1, every value becomes 0
    # column 2: mean 5, std sqrt((9 + 1 + 16) / 3) = sqrt(26/3)
    np.testing.assert_allclose(s.mean, [3, 5, 5])
    np.testing.assert_allclose(s.std, [np.sqrt(8 / 3), 0, np.sqrt(26 / 3)])
    Z = s.transform(X)
    np.testing.assert_allclose(Z[:, 0], np.array([-2, 0, 2]) / np.sqrt(8 / 3))
    np.testing.assert_array_equal(Z[:, 1], 0)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-15)
    np.testing.assert_allclose(s.inverse_transform(Z), X)
    np.testing.assert_array_equal(s.fit_transform(X), Z)


def test_standardizer_state_round_trips_through_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(50, 4)).astype(np.float32)
    s = datasets.Standardizer().fit(X)
    np.savez(tmp_path / "scaler.npz", **s.get_state())
    with np.load(tmp_path / "scaler.npz", allow_pickle=False) as f:
        t = datasets.Standardizer.from_state(f)
    Z = t.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(Z, s.transform(X))
    assert datasets.Standardizer().fit(np.arange(6).reshape(3, 2)).transform(
        np.ones((1, 2), int)).dtype == np.float64


def test_standardizer_refuses_misuse():
    with pytest.raises(RuntimeError, match="not fitted"):
        datasets.Standardizer().transform(np.zeros((2, 2)))
    s = datasets.Standardizer().fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="fitted on 2"):
        s.transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        s.transform(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="no samples"):
        datasets.Standardizer().fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="std >= 0"):
        datasets.Standardizer.from_state({"mean": [0.0], "std": [-1.0]})
