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
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nncore.sklearn import NNClassifier, NNRegressor  # noqa: E402
from conftest import assert_weights_equal, only_numpy_and, weights  # noqa: E402

# The tests train for a few epochs on purpose; those about the warning catch it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Stochastic Optimizer:sklearn.exceptions.ConvergenceWarning")

# Small networks and few epochs: check_estimator fits each one ~60 times.
SMALL = dict(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.01, random_state=0)
CHECKED = [
    NNClassifier(**SMALL),
    NNClassifier(**SMALL, dtype="float64"),
    NNClassifier(**SMALL, loss="hinge"),
    # 32 rows a step: with batch_size="auto" the checks' small data sets take one or two
    # steps an epoch, too few for check_class_weight_classifiers before the
    # (weighted) validation accuracy stops improving
    NNClassifier(**SMALL, dtype="float64", solver="sgd", early_stopping=True,
                 n_iter_no_change=3, batch_size=32),
    NNClassifier(**SMALL, solver="sgd", learning_rate="adaptive", nesterovs_momentum=False),
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
@pytest.mark.filterwarnings("ignore:batch_size=32 is larger")   # the checks' tiny data sets
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
    clf = NNClassifier(hidden_layer_sizes=(64,), learning_rate_init=0.01, max_iter=10,
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
    pipe.set_params(nnclassifier__learning_rate_init=0.01, nnclassifier__max_iter=10)
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.9
    assert pipe[-1].n_iter_ == 10


def test_grid_search(digits):
    X_train, _, y_train, _ = digits
    grid = GridSearchCV(NNClassifier(max_iter=10, random_state=0),
                        {"hidden_layer_sizes": [(2,), (32,)],
                         "learning_rate_init": [1e-4, 1e-2]},
                        cv=3)
    grid.fit(X_train[:600] / 16, y_train[:600])
    # two hidden units or lr 1e-4 cannot learn ten digits in 10 epochs
    assert grid.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-2}
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
    reg = NNRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=50,
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
    """scikit-learn's rule: stop once n_iter_no_change + 1 epochs in a row fail to beat
    best_validation_score_ by tol, and keep the weights of the best epoch."""
    X_train, _, y_train, _ = digits
    params = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=32,
                  early_stopping=True, n_iter_no_change=3, tol=0.0, random_state=0)
    clf = NNClassifier(**params, max_iter=200).fit(X_train / 16, y_train)
    scores = clf.validation_scores_
    assert clf.n_iter_ < 200 and len(scores) == len(clf.loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(scores) and clf.best_loss_ is None
    # with tol=0 a score equal to the best resets the count: the stop comes
    # n_iter_no_change + 1 epochs after the last epoch at the best score
    last_best = len(scores) - 1 - scores[::-1].index(max(scores))
    assert clf.n_iter_ == last_best + 1 + 3 + 1
    # the weights kept are those after the first epoch at the best score: the same
    # fit stopped there by max_iter ends on the same weights (bitwise: same seed)
    first_best = scores.index(max(scores))
    with pytest.warns(ConvergenceWarning):
        short = NNClassifier(**params, max_iter=first_best + 1).fit(X_train / 16, y_train)
    assert_weights_equal(weights(short.model_), weights(clf.model_))


def test_early_stopping_regressor_scores_r2():
    X, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    reg = NNRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                      early_stopping=True, random_state=0).fit(X, y / y.std())
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.9   # R^2


# ---- streaming, pickling, reproducibility ---------------------------------------------

def test_partial_fit_streaming_improves_the_score(digits):
    X_train, X_test, y_train, y_test = digits
    clf = NNClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=32,
                       random_state=0)
    chunks = np.array_split(np.arange(len(X_train)), 10)
    clf.partial_fit(X_train[chunks[0]] / 16, y_train[chunks[0]], classes=np.arange(10))
    first = clf.score(X_test / 16, y_test)
    for _ in range(2):
        for rows in chunks:
            clf.partial_fit(X_train[rows] / 16, y_train[rows])
    assert clf.score(X_test / 16, y_test) >= max(first + 0.2, 0.9)
    # scikit-learn's counts: n_iter_ is the last call's epochs, t_ all samples seen
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 21
    assert clf.t_ == len(chunks[0]) + 2 * len(X_train)


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
    reg = NNRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=32,
                      random_state=0)
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


def wide_data():
    """512 rows of 64 features, 10 classes: a 64-256-256 network on batches of 128 runs
    GEMMs above the 2 MFLOP a step where nncore starts a second thread."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((512, 64)).astype(np.float32)
    y = (X[:, :10].argmax(axis=1) + (X[:, 10] > 1)) % 10
    return X, y


WIDE = dict(hidden_layer_sizes=(256, 256), max_iter=3, batch_size=128, random_state=0)


@pytest.mark.parametrize("estimator", [
    NNClassifier(**WIDE), NNClassifier(**WIDE, early_stopping=True),
    NNClassifier(**dict(WIDE, solver="sgd")), NNRegressor(**WIDE)], ids=repr)
def test_pickle_is_the_network_and_the_fitted_attributes(estimator):
    """A fitted estimator pickles as model_'s state (nncore.Sequential's pickle), the
    best epoch's weights with early_stopping, and plain attributes: nothing compiled."""
    X, y = wide_data()
    estimator.fit(X, y if isinstance(estimator, NNClassifier) else X[:, :3] * 2.0)
    estimator.predict(X)
    blob = pickle.dumps(estimator)
    only_numpy_and(blob, ("nncore.model", "Sequential"),
                   ("nncore.sklearn", type(estimator).__name__))
    # the bound: the parameter bytes times 1 + the optimizer's state arrays per parameter
    # (Adam 2, SGD with momentum 1), once more for the best weights of early_stopping,
    # plus the configs and attributes (under 2.5 KB), ~120 B of header per array and
    # ~10 B per epoch of loss_curve_ and validation_scores_
    model = estimator.model_
    copies = 1 + len(model.optimizer.active_states()) + estimator.early_stopping
    state = sum(p.nbytes for p in model.parameters()) * copies
    epochs = len(estimator.loss_curve_) * (1 + estimator.early_stopping)
    assert state <= len(blob) <= state + 2500 + 120 * len(model.parameters()) * copies \
        + 10 * epochs, (len(blob), state)
    twin = pickle.loads(blob)
    assert twin.model_._plan_cache is None
    np.testing.assert_array_equal(twin.predict(X), estimator.predict(X))


_CHILD = """
import pickle, sys, warnings
import nncore
warnings.simplefilter("ignore")
assert nncore.get_num_threads() == {threads}, nncore.get_num_threads()
with open(sys.argv[1], "rb") as f:
    estimator, X, y = pickle.load(f)
out = [estimator.predict_proba(X) if hasattr(estimator, "predict_proba") else
       estimator.predict(X)]
estimator.partial_fit(X, y)
out.append(estimator.predict(X))
estimator.set_params(warm_start=True, max_iter=2).fit(X, y)
out += [estimator.predict(X), estimator.loss_curve_, estimator.t_]
out += [p for p in estimator.model_.parameters()]
with open(sys.argv[1], "wb") as f:
    pickle.dump(out, f)
"""


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_unpickled_in_a_process_of_another_thread_count(tmp_path, kind):
    """A fitted estimator unpickled in a fresh process whose default is one thread
    (OMP_NUM_THREADS=1) predicts bitwise what the original predicts on two, and
    partial_fit and a warm_start fit there continue bitwise as they do here."""
    import os
    import nncore
    X, y = wide_data()
    if kind == "classifier":
        estimator = NNClassifier(**WIDE)
    else:
        estimator, y = NNRegressor(**WIDE), X[:, :3] * 2.0
    with nncore.threads(2):
        estimator.fit(X, y)
    path = tmp_path / "estimator.pkl"
    path.write_bytes(pickle.dumps((estimator, X, y)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(threads=1), str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    there = pickle.loads(path.read_bytes())
    with nncore.threads(2):
        here = [estimator.predict_proba(X) if kind == "classifier" else
                estimator.predict(X)]
        estimator.partial_fit(X, y)
        here.append(estimator.predict(X))
        estimator.set_params(warm_start=True, max_iter=2).fit(X, y)
        here += [estimator.predict(X), estimator.loss_curve_, estimator.t_]
        here += [p for p in estimator.model_.parameters()]
    assert len(there) == len(here)
    for a, b in zip(there, here):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        else:
            assert a == b


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
    clf = NNClassifier(hidden_layer_sizes=8, solver="sgd", momentum=0.5, alpha=0.0,
                       dtype="float64", batch_size=1000, max_iter=5, random_state=0)
    X, y = blobs()
    with pytest.warns(UserWarning, match="batch_size=1000 is larger than the 200"):
        clf.fit(X, y)
    assert [layer.n_out for layer in clf.model_.layers] == [8, 3]
    assert clf.model_.dtype == np.float64 and clf.model_.l2 == 0.0
    opt = clf.model_.optimizer
    assert (type(opt).__name__, opt.lr, opt.momentum, opt.nesterov) == ("SGD", 0.001, 0.5, True)
    assert clf.get_params()["hidden_layer_sizes"] == 8      # stored as given
    clf.set_params(momentum=0.0, batch_size="auto").fit(X, y)   # nesterov: plain SGD then
    assert (clf.model_.optimizer.momentum, clf.model_.optimizer.nesterov) == (0.0, False)
    linear = NNRegressor(hidden_layer_sizes=(), max_iter=2, random_state=0).fit(X, y)
    assert len(linear.model_.layers) == 1
    adam = NNRegressor(beta_1=0.5, beta_2=0.75, epsilon=1e-6, max_iter=1).fit(X, y)
    assert (adam.model_.optimizer.betas, adam.model_.optimizer.eps) == ((0.5, 0.75), 1e-6)
    assert adam.model_.layers[0].activation == "relu"
    logistic = NNClassifier(activation="logistic", max_iter=1).fit(X, y)
    assert logistic.model_.layers[0].activation == "sigmoid"   # scikit-learn's name


@pytest.mark.parametrize("n, batch_size, l2", [
    (300, "auto", 1e-4 / 200),        # "auto": min(200, n) rows a step
    (50, "auto", 1e-4 / 50),
    (300, 64, 1e-4 / 64),
])
def test_alpha_is_divided_by_the_batch_as_in_sklearn(n, batch_size, l2):
    """scikit-learn's step penalizes alpha/2 ||W||^2 / batch size; nncore's model_.l2
    is that per-row factor."""
    X, y = blobs(n=n)
    clf = NNClassifier(hidden_layer_sizes=(4,), batch_size=batch_size, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert clf.fit(X, y).model_.l2 == pytest.approx(l2, rel=1e-15)
        # weights: a batch weighs batch_size * mean weight (here 2)
        clf.fit(X, y, sample_weight=np.full(n, 2.0))
    assert clf.model_.l2 == pytest.approx(l2 / 2, rel=1e-15)


@pytest.mark.parametrize("params, match", [
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), "hidden_layer_sizes"),
    (dict(activation="softmax"), "activation"),
    (dict(loss="mse"), "loss"),
    (dict(solver="lbfgs"), "solver='lbfgs' is not supported"),
    (dict(solver="rmsprop"), "solver"),
    (dict(learning_rate=0.01), "the rate itself is learning_rate_init"),
    (dict(learning_rate="optimal"), "learning_rate"),
    (dict(learning_rate_init=0), "learning_rate_init"),
    (dict(power_t=-1), "power_t"),
    (dict(alpha=-1), "alpha"),
    (dict(momentum=1.5), "momentum"),
    (dict(nesterovs_momentum=1), "nesterovs_momentum"),
    (dict(beta_1=1.0), "beta_1"),
    (dict(beta_2=-0.1), "beta_2"),
    (dict(epsilon=0), "epsilon"),
    (dict(max_iter=0), "max_iter"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size="full"), "batch_size"),
    (dict(shuffle="yes"), "shuffle"),
    (dict(warm_start=None), "warm_start"),
    (dict(tol=-1), "tol"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(early_stopping=True, validation_fraction=1.0), "validation_fraction"),
    (dict(early_stopping=True, validation_fraction=0.97), "validation_fraction"),
    (dict(verbose="loud"), "verbose"),
    (dict(class_weight="equal"), "class_weight"),
    (dict(class_weight={0: -1.0}), "class_weight"),
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


# ---- scikit-learn's MLP: names, defaults, attributes, stopping, schedules ------------

@pytest.mark.parametrize("ours, theirs", [(NNClassifier, MLPClassifier),
                                          (NNRegressor, MLPRegressor)])
def test_sklearn_parameter_names_and_defaults(ours, theirs):
    mine, sk = ours().get_params(), theirs().get_params()
    assert set(sk) - set(mine) == {"max_fun"}               # lbfgs only
    assert {k: mine[k] for k in sk if k in mine} == {k: sk[k] for k in sk if k != "max_fun"}


@pytest.mark.parametrize("centers", [2, 3])
def test_fitted_attributes_as_sklearn_lays_them_out(centers):
    X, y = blobs(centers=centers)
    params = dict(hidden_layer_sizes=(5, 4), max_iter=3)
    clf = NNClassifier(**params, random_state=0).fit(X, y)
    sk = MLPClassifier(**params, random_state=0).fit(X, y)
    for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_",
                 "n_features_in_"):
        assert getattr(clf, name) == getattr(sk, name), name
    assert [c.shape for c in clf.coefs_] == [c.shape for c in sk.coefs_]
    assert [b.shape for b in clf.intercepts_] == [b.shape for b in sk.intercepts_]
    np.testing.assert_array_equal(clf.classes_, sk.classes_)
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    # coefs_ (n_in, n_out) and intercepts_ give the network's outputs
    a = X
    for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        a = np.maximum(a @ W.astype(np.float64) + b, 0)
    out = a @ clf.coefs_[-1].astype(np.float64) + clf.intercepts_[-1]
    np.testing.assert_allclose(clf.decision_function(X), out[:, 0] if centers == 2 else out,
                               rtol=1e-5, atol=1e-5)       # float32 network, 3 layers
    if centers == 2:            # one logistic unit: p(classes_[1]) = sigmoid(o)
        p = 1 / (1 + np.exp(-out[:, 0]))
        np.testing.assert_allclose(clf.predict_proba(X), np.c_[1 - p, p], atol=1e-5)


@pytest.mark.parametrize("ours, theirs, centers, activation", [
    (NNClassifier, MLPClassifier, 2, "relu"),         # one logistic output
    (NNClassifier, MLPClassifier, 3, "logistic"),     # softmax; init bound sqrt(2 / fan)
    (NNRegressor, MLPRegressor, 2, "tanh"),           # two targets
])
def test_same_weights_as_sklearn_in_float64(ours, theirs, centers, activation):
    """The same random_state draws the same initial network, and full-batch SGD with
    momentum takes the same steps: after 20 epochs the float64 weights agree to
    rtol 1e-10 (measured ~1e-15; the margin is for other BLAS summation orders). A
    regressor's loss_ sums over the targets, scikit-learn's averages them
    (docs/sklearn.md): twice scikit-learn's here, penalty aside (alpha=0)."""
    X, y = blobs(centers=centers)
    if ours is NNRegressor:
        y = np.c_[X[:, 0] * X[:, 1], np.sin(X[:, 0])]
    params = dict(hidden_layer_sizes=(6, 5), activation=activation, solver="sgd",
                  learning_rate_init=0.05, momentum=0.9, alpha=0.0, max_iter=20, tol=0.0,
                  random_state=3)
    mine = ours(**params, dtype="float64").fit(X, y)
    sk = theirs(**params).fit(X, y)
    for a, b in zip(mine.coefs_ + mine.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    scale = 2.0 if ours is NNRegressor else 1.0
    np.testing.assert_allclose(mine.loss_curve_, scale * np.array(sk.loss_curve_),
                               rtol=1e-10)


def test_convergence_warning_and_tol_stopping_count_as_sklearn():
    """Training loss never beats best_loss_ - tol (tol is huge): both stop after
    n_iter_no_change + 2 epochs (epoch 1 sets best_loss_), without a warning; a
    max_iter that ends training first warns."""
    X, y = blobs()
    params = dict(hidden_layer_sizes=(8,), tol=100.0, n_iter_no_change=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = NNClassifier(**params).fit(X, y)
        sk = MLPClassifier(**params).fit(X, y)
    assert clf.n_iter_ == sk.n_iter_ == 5
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(4\) reached"):
        NNClassifier(**dict(params, max_iter=4)).fit(X, y)


def test_adaptive_divides_the_rate_by_5_until_1e_6():
    """learning_rate='adaptive' (sgd): each time n_iter_no_change + 1 epochs fail to
    improve by tol, lr /= 5; training stops once lr <= 1e-6. With a huge tol every epoch
    after the first fails: the epochs are scikit-learn's, and so is the last rate."""
    X, y = blobs()
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive",
                  learning_rate_init=0.1, tol=100.0, n_iter_no_change=2, random_state=0)
    clf = NNClassifier(**params).fit(X, y)
    sk = MLPClassifier(**params).fit(X, y)
    # 0.1 / 5**k <= 1e-6 first for k = 8: 8 cuts of 3 epochs, 3 more, and epoch 1
    assert clf.n_iter_ == sk.n_iter_ == 1 + 8 * 3 + 3
    assert clf.model_.optimizer.lr == pytest.approx(0.1 / 5 ** 8, rel=1e-12)
    # Adam has no schedule: the same run stops at the first failure
    adam = NNClassifier(**dict(params, solver="adam")).fit(X, y)
    assert adam.n_iter_ == 1 + 3 and adam.model_.optimizer.lr == 0.1


def test_invscaling_after_each_epoch():
    X, y = blobs()
    clf = NNClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                       learning_rate_init=0.2, power_t=0.25, max_iter=3, random_state=0)
    clf.fit(X, y)
    assert clf.t_ == 3 * 200
    assert clf.model_.optimizer.lr == pytest.approx(0.2 / (600 + 1) ** 0.25, rel=1e-12)
    const = NNClassifier(**dict(clf.get_params(), learning_rate="constant")).fit(X, y)
    assert const.model_.optimizer.lr == 0.2


def test_warm_start_goes_on_from_the_last_fit():
    X, y = blobs()
    params = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=5,
                  random_state=0)
    clf = NNClassifier(**params, warm_start=True).fit(X, y)
    first = list(clf.loss_curve_)
    clf.fit(X, y)
    assert clf.n_iter_ == 5 and clf.t_ == 10 * 200 and clf.loss_curve_[:5] == first
    fresh = NNClassifier(**params).fit(X, y)
    fresh.fit(X, y)                                    # without warm_start: starts over
    assert fresh.loss_curve_ == first
    assert clf.loss_curve_[5] < first[0]               # went on from the trained weights
    with pytest.raises(ValueError, match="warm_start needs y to hold the classes"):
        clf.fit(X[y < 2], y[y < 2])


def test_verbose_prints_sklearn_lines(capsys):
    X, y = blobs()
    NNClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True, early_stopping=True,
                 random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and len(lines) == 4
    assert lines[1].startswith("Validation score: ")


# ---- class_weight ------------------------------------------------------------------

def test_class_weight_is_a_sample_weight():
    from sklearn.utils.class_weight import compute_sample_weight
    X, y = make_blobs(n_samples=300, centers=[[0, 0], [1, 1]], cluster_std=1.0,
                      random_state=0, )
    keep = (y == 0) | (np.arange(300) % 3 == 0)          # class 1 a third as common
    X, y = X[keep], y[keep]
    balanced = NNClassifier(**SMALL, class_weight="balanced").fit(X, y)
    by_hand = NNClassifier(**SMALL).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    assert_weights_equal(weights(balanced.model_), weights(by_hand.model_))
    plain = NNClassifier(**SMALL).fit(X, y)
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    # a dict multiplies sample_weight; classes left out weigh 1
    w = np.linspace(0.5, 1.5, len(y))
    a = NNClassifier(**SMALL, class_weight={1: 3.0}).fit(X, y, sample_weight=w)
    b = NNClassifier(**SMALL).fit(X, y, sample_weight=w * np.where(y == 1, 3.0, 1.0))
    assert_weights_equal(weights(a.model_), weights(b.model_))
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        NNClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    NNClassifier(**SMALL, class_weight={0: 1.0, 1: 2.0}).partial_fit(X, y, classes=[0, 1])


# ---- labels ------------------------------------------------------------------------

def test_float_labels_are_classes():
    X, y = blobs()
    floats = y.astype(np.float64)                          # 0.0, 1.0, 2.0
    clf = NNClassifier(**SMALL).fit(X, floats)
    assert clf.classes_.dtype == np.float64
    np.testing.assert_array_equal(clf.classes_, [0.0, 1.0, 2.0])
    pred = clf.predict(X)
    assert pred.dtype == np.float64
    ints = NNClassifier(**SMALL).fit(X, y)                 # the same network
    np.testing.assert_array_equal(pred, ints.predict(X).astype(np.float64))
    shifted = NNClassifier(**SMALL).fit(X, floats * 3 - 1)    # -1.0, 2.0, 5.0
    np.testing.assert_array_equal(shifted.classes_, [-1.0, 2.0, 5.0])
    np.testing.assert_array_equal(shifted.predict(X), pred * 3 - 1)
    # fractions are not class labels for scikit-learn ("continuous"), nor here
    with pytest.raises(ValueError, match="continuous"):
        NNClassifier().fit(X, floats + 0.5)


@pytest.mark.parametrize("y", [np.array(["a", "b"] * 50),
                               np.array(["a", 1.5] * 50, dtype=object),
                               np.array([b"x", b"y"] * 50)])
def test_regressor_refuses_text_targets(y):
    X = np.random.default_rng(0).normal(size=(100, 3))
    with pytest.raises(ValueError, match="y must hold numbers for NNRegressor.*NNClassifier"):
        NNRegressor(max_iter=1).fit(X, y)
