"""nncore.sklearn: scikit-learn's estimator checks, then the estimators in the places
scikit-learn users put them (Pipeline, GridSearchCV, pickle, streaming)."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

# nncore.sklearn needs 1.6 (validate_data), as does expected_failed_checks below
pytest.importorskip("sklearn", minversion="1.6")

from sklearn.datasets import load_digits, make_blobs, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nncore.sklearn import NNClassifier, NNRegressor  # noqa: E402
from conftest import assert_weights_equal, weights  # noqa: E402

# Small networks and few epochs: check_estimator fits each one ~60 times.
SMALL = dict(hidden_layer_sizes=(16,), max_iter=30, learning_rate=0.01, random_state=0)
CHECKED = [
    NNClassifier(**SMALL),
    NNClassifier(**SMALL, dtype="float64"),
    NNClassifier(**SMALL, loss="hinge"),
    NNClassifier(**SMALL, dtype="float64", optimizer="sgd", nesterov=True,
                 early_stopping=True, n_iter_no_change=3),
    NNRegressor(**SMALL),
    NNRegressor(**SMALL, dtype="float64"),
]


def expected_failed_checks(estimator):
    """check_sample_weight_equivalence_on_dense_data fits integer weights and the rows
    repeated as often, and compares at rtol=1e-7. Its 15 rows (~30 repeated) fit in one
    batch of 32, so without early stopping the two fits differ only in rounding and the
    float64 instances pass; with more rows than batch_size the batches, and so the fits,
    would differ in any precision."""
    if estimator.early_stopping:
        return {"check_sample_weight_equivalence_on_dense_data":
                "the validation split draws rows: repeated and weighted rows hold out "
                "different samples"}
    if estimator.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data":
                "float32 rounding (~1e-7 relative) against the check's rtol=1e-7"}
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # max_iter=30
@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---- optional dependency ------------------------------------------------------

def test_sklearn_is_optional():
    """import nncore leaves scikit-learn alone; without it, nncore.sklearn says what
    to install (in a fresh interpreter: this one has imported scikit-learn)."""
    code = """if True:
        import sys
        import nncore
        assert "sklearn" not in sys.modules, "import nncore imported sklearn"
        sys.modules["sklearn"] = None             # as if it were not installed
        try:
            import nncore.sklearn
        except ImportError as exc:
            print(exc)
        """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert 'pip install "nncore-mlp[datasets]"' in run.stdout


# ---- data ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    """The 8x8 digits, pixels 0..16, 25% held out (stratified)."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def blobs(n=200, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, cluster_std=1.0, random_state=seed)
    return StandardScaler().fit_transform(X), y


# ---- learning -------------------------------------------------------------------

def test_digits(digits):
    X_train, X_test, y_train, y_test = digits
    clf = NNClassifier(hidden_layer_sizes=(64,), learning_rate=0.01, max_iter=10,
                       random_state=0).fit(X_train / 16, y_train)
    assert clf.score(X_test / 16, y_test) >= 0.9
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    proba = clf.predict_proba(X_test / 16)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_test / 16)), proba, rtol=1e-12)


def test_pipeline_with_scaler(digits):
    X_train, X_test, y_train, y_test = digits        # raw pixels: the scaler matters
    pipe = make_pipeline(StandardScaler(), NNClassifier(hidden_layer_sizes=(32,),
                                                        max_iter=3, random_state=0))
    pipe.set_params(nnclassifier__learning_rate=0.01, nnclassifier__max_iter=10)
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.9
    assert pipe[-1].n_iter_ == 10


def test_grid_search(digits):
    X_train, _, y_train, _ = digits
    grid = GridSearchCV(NNClassifier(max_iter=10, random_state=0),
                        {"hidden_layer_sizes": [(2,), (32,)], "learning_rate": [1e-4, 1e-2]},
                        cv=3)
    grid.fit(X_train[:600] / 16, y_train[:600])
    # two hidden units or lr 1e-4 cannot learn ten digits in 10 epochs
    assert grid.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate": 1e-2}
    assert grid.best_score_ >= 0.8
    assert grid.best_estimator_.hidden_layer_sizes == (32,)


def test_string_labels():
    X, y = blobs()
    names = np.array(["cat", "dog", "eel"])
    clf = NNClassifier(**SMALL).fit(X, names[y])
    np.testing.assert_array_equal(clf.classes_, names)
    pred = clf.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert clf.score(X, names[y]) >= 0.9
    # the same network as integer labels (the encoding is the sorted order)
    np.testing.assert_array_equal(pred, names[NNClassifier(**SMALL).fit(X, y).predict(X)])


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "hinge"])
def test_binary_string_labels(loss):
    X, y = blobs(centers=2)
    labels = np.array(["no", "yes"], dtype=object)[y]
    clf = NNClassifier(**SMALL, loss=loss).fit(X, labels)
    decision = clf.decision_function(X)
    assert decision.shape == (len(X),)                     # o_1 - o_0
    np.testing.assert_array_equal(clf.predict(X), np.where(decision > 0, "yes", "no"))
    assert clf.score(X, labels) >= 0.9
    if loss == "hinge":
        assert not hasattr(clf, "predict_proba")           # the SVM loss has no probabilities
    else:
        assert clf.predict_proba(X).shape == (len(X), 2)


def test_regressor_single_and_multi_output():
    X, Y = make_regression(n_samples=200, n_features=5, n_targets=2, noise=1.0,
                           random_state=0)
    Y = Y / Y.std(axis=0)
    reg = NNRegressor(hidden_layer_sizes=(32,), learning_rate=0.01, max_iter=50,
                      random_state=0)
    assert reg.fit(X, Y).predict(X).shape == (200, 2) and reg.n_outputs_ == 2
    assert reg.score(X, Y) >= 0.9
    assert reg.fit(X, Y[:, 0]).predict(X).shape == (200,) and reg.n_outputs_ == 1
    assert reg.predict(X).dtype == np.float64
    assert reg.score(X, Y[:, 0]) >= 0.9


def test_sample_weight_shifts_the_decision():
    # two overlapping blobs: weighting class 1 up makes it predicted more often
    X, y = make_blobs(n_samples=200, centers=[[0, 0], [1, 1]], cluster_std=1.0,
                      random_state=0)
    plain = NNClassifier(**SMALL).fit(X, y).predict(X)
    weighted = NNClassifier(**SMALL).fit(X, y, sample_weight=np.where(y == 1, 10.0, 1.0))
    assert (weighted.predict(X) == 1).sum() > (plain == 1).sum()


def test_early_stopping(digits):
    X_train, _, y_train, _ = digits
    clf = NNClassifier(hidden_layer_sizes=(32,), learning_rate=0.01, max_iter=200,
                       early_stopping=True, n_iter_no_change=3, tol=0.0, random_state=0)
    clf.fit(X_train / 16, y_train)
    assert clf.n_iter_ < 200
    assert len(clf.validation_loss_curve_) == len(clf.loss_curve_) == clf.n_iter_
    best = int(np.argmin(clf.validation_loss_curve_))
    assert clf.n_iter_ == best + 1 + 3                     # stopped 3 epochs after the best
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        clf.set_params(max_iter=2, n_iter_no_change=5).fit(X_train / 16, y_train)


# ---- streaming, pickling, reproducibility ---------------------------------------------

def test_partial_fit_streaming_improves_the_score(digits):
    X_train, X_test, y_train, y_test = digits
    clf = NNClassifier(hidden_layer_sizes=(32,), learning_rate=0.01, random_state=0)
    chunks = np.array_split(np.arange(len(X_train)), 10)
    clf.partial_fit(X_train[chunks[0]] / 16, y_train[chunks[0]], classes=np.arange(10))
    first = clf.score(X_test / 16, y_test)
    for _ in range(2):
        for rows in chunks:
            clf.partial_fit(X_train[rows] / 16, y_train[rows])
    assert clf.score(X_test / 16, y_test) >= max(first + 0.2, 0.9)
    assert clf.n_iter_ == len(clf.loss_curve_) == 21


def test_partial_fit_checks_its_classes():
    X, y = blobs()
    clf = NNClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])   # a class may come later
    clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="unseen labels"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="differs from classes_"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :1], y)


def test_regressor_partial_fit():
    X, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    y = y / y.std()
    reg = NNRegressor(hidden_layer_sizes=(32,), learning_rate=0.01, random_state=0)
    reg.partial_fit(X, y)
    first = reg.score(X, y)
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.score(X, y) > max(first, 0.9)


def test_pickle_round_trip():
    X, y = blobs()
    clf = NNClassifier(**SMALL).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict(X), clf.predict(X))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    # the optimizer's state and the shuffling travel too: training goes on the same
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert_weights_equal(weights(copy.model_), weights(clf.model_))


def test_random_state_reproducible():
    X, y = blobs()
    a = NNClassifier(**SMALL).fit(X, y)
    b = NNClassifier(**SMALL).fit(X, y)
    assert_weights_equal(weights(a.model_), weights(b.model_))
    assert a.loss_curve_ == b.loss_curve_
    a.fit(X, y)                                            # refitting starts over
    assert_weights_equal(weights(a.model_), weights(b.model_))
    c = NNClassifier(**dict(SMALL, random_state=1)).fit(X, y)
    assert not np.array_equal(c.model_.layers[0].weight, a.model_.layers[0].weight)
    d = NNClassifier(**dict(SMALL, random_state=None)).fit(X, y)
    e = NNClassifier(**dict(SMALL, random_state=None)).fit(X, y)
    assert not np.array_equal(d.model_.layers[0].weight, e.model_.layers[0].weight)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_n_threads_gives_the_same_network(n_threads):
    X, y = blobs()
    ref = NNClassifier(**dict(SMALL, hidden_layer_sizes=(64,))).fit(X, y)
    clf = NNClassifier(**dict(SMALL, hidden_layer_sizes=(64,)), n_threads=n_threads).fit(X, y)
    assert_weights_equal(weights(clf.model_), weights(ref.model_))
    np.testing.assert_array_equal(clf.predict_proba(X), ref.predict_proba(X))


# ---- parameters -----------------------------------------------------------------

def test_parameters():
    clf = NNClassifier(hidden_layer_sizes=8, optimizer="sgd", momentum=0.5, nesterov=True,
                       alpha=0.0, dtype="float64", batch_size=None, max_iter=5,
                       random_state=0)
    X, y = blobs()
    clf.fit(X, y)
    assert [layer.n_out for layer in clf.model_.layers] == [8, 3]
    assert clf.model_.dtype == np.float64 and clf.model_.l2 == 0.0
    opt = clf.model_.optimizer
    assert (type(opt).__name__, opt.lr, opt.momentum, opt.nesterov) == ("SGD", 0.001, 0.5, True)
    assert clf.get_params()["hidden_layer_sizes"] == 8      # stored as given
    linear = NNRegressor(hidden_layer_sizes=(), max_iter=2, random_state=0).fit(X, y)
    assert len(linear.model_.layers) == 1


@pytest.mark.parametrize("params, match", [
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), "hidden_layer_sizes"),
    (dict(loss="mse"), "loss"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(learning_rate=0), "learning_rate"),
    (dict(alpha=-1), "alpha"),
    (dict(beta_1=1.0), "beta_1"),
    (dict(max_iter=0), "max_iter"),
    (dict(early_stopping=True, validation_fraction=1.0), "validation_fraction"),
    (dict(dtype="float16"), "dtype"),
    (dict(n_threads=0), "n_threads"),
])
def test_bad_parameters_name_themselves(params, match):
    X, y = blobs(n=30)
    with pytest.raises((ValueError, TypeError), match=match):
        NNClassifier(**params).fit(X, y)


def test_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["a", "b"])
    clf = NNClassifier(**SMALL).fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(frame)
