"""scikit-learn estimators that train nncore MLPs: NNClassifier and NNRegressor.

    model_  = MLP([n_features_in_, *hidden_layer_sizes, n_outputs], activation, l2=alpha)
    fit     : max_iter epochs of minibatch SGD or Adam, each step in the compiled core
    predict : classes_[argmax_j o_j] (classifier), o (regressor), o = model_.forward(X)

The estimators follow scikit-learn's conventions: the constructor only stores its
parameters, fit checks them and the data (sklearn's validate_data) and sets the fitted
attributes that end in "_"; get_params/set_params, clone, Pipeline, GridSearchCV and
pickle work as for scikit-learn's own estimators.

scikit-learn (>= 1.6) is optional for nncore: this module needs it, `import nncore`
does not import it (pip install "nncore-mlp[datasets]").
"""
import contextlib
import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data   # 1.6
except ImportError as exc:           # scikit-learn is an optional dependency
    raise ImportError(
        'nncore.sklearn needs scikit-learn >= 1.6, which nncore does not install by '
        'default: pip install "nncore-mlp[datasets]" (in a checkout: pip install -e ".[datasets]")') from exc

from nncore import _checks, optim
from nncore._threads import threads
from nncore.callbacks import EarlyStopping
from nncore.layers import positive_int
from nncore.model import MLP

__all__ = ["NNClassifier", "NNRegressor"]

_OPTIMIZERS = ("adam", "sgd")


class _BaseNN(BaseEstimator):
    """What NNClassifier and NNRegressor share: checks, the network, the training loop.

    Subclasses define __init__ (scikit-learn reads the parameters from its
    signature), _LOSSES, and _targets/_n_outputs for their kind of y.
    """

    _LOSSES = ()

    # ---- parameters --------------------------------------------------------

    def _store(self, params):
        """Keep each constructor argument as the attribute of its name (all __init__
        does, as scikit-learn requires)."""
        for name in self._get_param_names():
            setattr(self, name, params[name])

    def _check_params(self):
        """The parameters checked (errors name the estimator's parameter, not nncore's);
        returns (hidden layer sizes as a tuple, dtype)."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, (bool, np.bool_)):
            sizes = (sizes,)
        try:
            sizes = tuple(positive_int(s, "hidden_layer_sizes[i]") for s in sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints >= 1, "
                            f"got {self.hidden_layer_sizes!r}") from None
        except ValueError:
            raise ValueError(f"hidden_layer_sizes must hold ints >= 1, "
                             f"got {self.hidden_layer_sizes!r}") from None
        _checks.choice(self.loss, "loss", self._LOSSES)
        _checks.choice(self.optimizer, "optimizer", _OPTIMIZERS)
        _checks.real_scalar(self.learning_rate, "learning_rate", positive=True)
        _checks.real_scalar(self.alpha, "alpha", nonnegative=True)
        if self.optimizer == "sgd":
            _checks.real_scalar(self.momentum, "momentum", nonnegative=True)
            if self.nesterov and not self.momentum:
                raise ValueError("nesterov=True needs momentum > 0")
        else:
            for name in ("beta_1", "beta_2"):
                beta = _checks.real_scalar(getattr(self, name), name)
                if not 0 <= beta < 1:
                    raise ValueError(f"{name} must lie in [0, 1), got {beta}")
            _checks.real_scalar(self.epsilon, "epsilon", positive=True)
        positive_int(self.max_iter, "max_iter")
        if self.batch_size is not None:
            positive_int(self.batch_size, "batch_size")
        if self.early_stopping:
            fraction = _checks.real_scalar(self.validation_fraction, "validation_fraction")
            if not 0 < fraction < 1:
                raise ValueError(f"validation_fraction must lie in (0, 1), got {fraction}")
            positive_int(self.n_iter_no_change, "n_iter_no_change")
            _checks.real_scalar(self.tol, "tol", nonnegative=True)
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.n_threads is not None:
            positive_int(self.n_threads, "n_threads")
        return sizes, dtype

    def _make_optimizer(self):
        if self.optimizer == "sgd":
            return optim.SGD(lr=self.learning_rate, momentum=self.momentum,
                             nesterov=self.nesterov)
        return optim.Adam(lr=self.learning_rate, betas=(self.beta_1, self.beta_2),
                          eps=self.epsilon)

    def _threads(self):
        """nncore.threads(n_threads) around the compiled calls (nothing for None)."""
        if self.n_threads is None:
            return contextlib.nullcontext()
        return threads(positive_int(self.n_threads, "n_threads"))

    # ---- training ----------------------------------------------------------

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        """fit (incremental=False: a new network, max_iter epochs) or partial_fit
        (one epoch, from the current network when there is one)."""
        sizes, dtype = self._check_params()
        first = not (incremental and hasattr(self, "model_"))
        X, y = self._targets(X, y, dtype, first, incremental, classes)
        if sample_weight is not None:
            sample_weight = _checks.sample_weights(np.asarray(sample_weight), "sample_weight",
                                                   X.shape[0])

        rng = check_random_state(self.random_state)
        if first:
            self.model_ = MLP([X.shape[1], *sizes, self._n_outputs()], self.activation,
                              seed=int(rng.randint(np.iinfo(np.int32).max)), dtype=dtype,
                              l2=self.alpha)
            self.loss_curve_ = []
            self.validation_loss_curve_ = None
            self.n_iter_ = 0
            optimizer = self._make_optimizer()
        else:
            optimizer = None                 # the model's own, with its state

        validation, callbacks = None, []
        if self.early_stopping and not incremental:
            n = X.shape[0]
            n_val = int(np.ceil(self.validation_fraction * n))     # train_test_split's count
            if n_val >= n:
                raise ValueError(f"early_stopping holds out validation_fraction="
                                 f"{self.validation_fraction} of the samples: n_samples={n} "
                                 f"leaves none to train on")
            stratify = None
            if isinstance(self, ClassifierMixin):   # stratified where every class fits in both
                counts = np.bincount(y)
                if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
                    stratify = y
            arrays = [X, y] + ([sample_weight] if sample_weight is not None else [])
            split = train_test_split(*arrays, test_size=n_val, random_state=rng,
                                     stratify=stratify)
            X, X_val, y, y_val = split[:4]
            sample_weight = split[4] if sample_weight is not None else None
            validation = (X_val, y_val)
            callbacks = [EarlyStopping("val_loss", patience=self.n_iter_no_change,
                                       min_delta=float(self.tol), restore_best_weights=True)]

        with self._threads():
            history = self.model_.fit(
                X, y, loss=self.loss, optimizer=optimizer,
                epochs=1 if incremental else self.max_iter, batch_size=self.batch_size,
                validation_data=validation, callbacks=callbacks, verbose=self.verbose,
                shuffle=self.shuffle, sample_weight=sample_weight)
        self.loss_curve_ = self.loss_curve_ + list(history["loss"])
        self.n_iter_ += len(history.epoch)
        if validation is not None:
            self.validation_loss_curve_ = list(history["val_loss"])
            if not history.stopped_early:
                warnings.warn(f"the validation loss still improved by more than tol={self.tol} "
                              f"within the last n_iter_no_change={self.n_iter_no_change} "
                              f"epochs when max_iter={self.max_iter} was reached",
                              ConvergenceWarning, stacklevel=3)
        return self

    def _forward(self, X):
        """The network's outputs o (n, n_outputs) for X, in float64 (scikit-learn's
        convention for predictions, whatever the network's dtype)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=self.model_.dtype, reset=False)
        with self._threads():          # in blocks of rows: the workspaces stay small
            return np.asarray(self.model_.output(X), dtype=np.float64)


def _init_docstring(loss_doc):
    return f"""
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units per hidden layer; () trains a linear model.
    activation : str, default="relu"
        Hidden-layer activation: relu, tanh, sigmoid, leaky_relu, softplus, identity, ...
        (nncore.functional.ACTIVATIONS). The output layer stays linear.
{loss_doc}
    optimizer : {{"adam", "sgd"}}, default="adam"
    learning_rate : float > 0, default=0.001
    momentum : float >= 0, default=0.9
        SGD only; PyTorch's convention v = momentum v + g, w -= learning_rate v.
    nesterov : bool, default=False
        SGD only: w -= learning_rate (g + momentum v).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam only.
    alpha : float >= 0, default=0.0001
        L2 penalty: the loss gains 1/2 alpha sum_l ||W_l||^2 (weights, not biases), not
        divided by the batch size as in scikit-learn's MLP.
    batch_size : int >= 1 or None, default=32
        Samples per step (None: the whole training set).
    max_iter : int >= 1, default=200
        Epochs (passes over the data) that fit runs, fewer with early_stopping.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    early_stopping : bool, default=False
        Hold out validation_fraction of the samples (a random split, stratified for
        classifiers when every class has room on both sides), stop
        when the validation loss has not decreased by more than tol for n_iter_no_change
        epochs in a row (nncore.callbacks.EarlyStopping), and keep the weights of the
        best epoch. Without it fit runs exactly max_iter epochs and tol and
        n_iter_no_change are not used. partial_fit never holds samples out.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=10
    tol : float >= 0, default=1e-4
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffling and the validation split: an int gives
        bitwise the same network on every fit, whatever n_threads.
    dtype : {{"float32", "float64"}}, default="float32"
        Precision of the weights and of the arithmetic.
    verbose : {{0, 1, 2}}, default=0
        1: a progress bar (a line per epoch off a terminal), 2: a line per epoch.
    n_threads : int >= 1 or None, default=None
        Threads for nncore's kernels during fit and predict (None: nncore's setting,
        nncore.get_num_threads()).

    A NaN or inf loss stops fit with nncore.TrainingDiverged (try a smaller
    learning_rate); GridSearchCV then scores that candidate error_score.

    Attributes
    ----------
    model_ : nncore.Sequential
        The trained network.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names (a DataFrame).
    loss_curve_ : list of float
        The mean training loss of each epoch (penalty included).
    validation_loss_curve_ : list of float or None
        The validation loss of each epoch, with early_stopping.
    n_iter_ : int
        Epochs run: by fit, then one more per partial_fit.
"""


class NNClassifier(ClassifierMixin, _BaseNN):
    __doc__ = """A multi-layer perceptron classifier trained by nncore.

        o = MLP(x),  p = softmax(o),  predict(x) = classes_[argmax_j o_j]

    Any class labels (ints, strings, ...) are encoded as 0..K-1 with a LabelEncoder;
    the network has K outputs, two for a binary problem.
    """ + _init_docstring("""\
    loss : {"softmax_cross_entropy", "hinge"}, default="softmax_cross_entropy"
        softmax_cross_entropy: L = mean_i logsumexp(o_i) - o_i[y_i], with predict_proba.
        hinge: the multiclass SVM loss mean_i sum_{j != y_i} max(0, o_ij - o_iy_i + 1),
        without predict_proba.""") + """\
    classes_ : ndarray (n_classes,)
        The class labels, sorted.
    """

    _LOSSES = ("softmax_cross_entropy", "hinge")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *,
                 loss="softmax_cross_entropy", optimizer="adam", learning_rate=0.001,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 alpha=0.0001, batch_size=32, max_iter=200, shuffle=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, random_state=None, dtype="float32", verbose=0, n_threads=None):
        self._store(locals())

    def _targets(self, X, y, dtype, first, incremental, classes):
        X, y = validate_data(self, X, y, dtype=dtype, reset=first)
        check_classification_targets(y)
        if incremental and first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit "
                                 "(all the labels y may hold, e.g. classes=np.unique(y_all))")
            self.classes_ = np.unique(np.asarray(classes))
        elif incremental and classes is not None:
            if not np.array_equal(self.classes_, np.unique(np.asarray(classes))):
                raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r} "
                                 f"of the first call to partial_fit")
        elif not incremental:
            self.classes_ = np.unique(y)
        encoder = LabelEncoder().fit(self.classes_)
        try:
            return X, encoder.transform(y)
        except ValueError as exc:            # labels outside classes_
            raise ValueError(f"{exc}; partial_fit knows classes_={self.classes_!r}") from None

    def _n_outputs(self):
        return len(self.classes_)

    def fit(self, X, y, sample_weight=None):
        """Train a new network on X (n_samples, n_features) and labels y (n_samples,).

        sample_weight : array (n_samples,) >= 0 or None; each batch's loss becomes
            sum_i w_i l_i / sum_i w_i.

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y) from the current weights and optimizer state (a new
        network on the first call, which needs `classes`: every label y may ever hold).

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def decision_function(self, X):
        """The network's outputs o (n_samples, n_classes); for two classes o_1 - o_0
        (n_samples,), > 0 where classes_[1] is predicted."""
        out = self._forward(X)
        return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out

    def predict(self, X):
        """classes_[argmax_j o_j] (n_samples,)."""
        out = self._forward(X)
        return self.classes_[np.argmax(out, axis=1)]

    def _has_proba(self):
        return self.loss == "softmax_cross_entropy"

    @available_if(_has_proba)
    def predict_proba(self, X):
        """p = softmax(o) (n_samples, n_classes), columns in the order of classes_
        (softmax_cross_entropy only)."""
        out = self._forward(X)
        out -= out.max(axis=1, keepdims=True)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """log p = o - logsumexp(o) (n_samples, n_classes) (softmax_cross_entropy only)."""
        out = self._forward(X)
        out -= out.max(axis=1, keepdims=True)
        out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
        return out


class NNRegressor(RegressorMixin, _BaseNN):
    __doc__ = """A multi-layer perceptron regressor trained by nncore.

        o = MLP(x),  predict(x) = o

    y may be (n_samples,) or (n_samples, n_targets); the network has one output per target.
    """ + _init_docstring("""\
    loss : {"mse"}, default="mse"
        L = mean_i 1/2 ||o_i - y_i||^2.""") + """\
    n_outputs_ : int
        The number of targets.
    """

    _LOSSES = ("mse",)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="mse",
                 optimizer="adam", learning_rate=0.001, momentum=0.9, nesterov=False,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, alpha=0.0001, batch_size=32,
                 max_iter=200, shuffle=True, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, tol=1e-4, random_state=None, dtype="float32",
                 verbose=0, n_threads=None):
        self._store(locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _targets(self, X, y, dtype, first, incremental, classes):
        X, y = validate_data(self, X, y, dtype=dtype, reset=first, multi_output=True,
                             y_numeric=True)
        y = np.asarray(y, dtype=dtype).reshape(y.shape[0], -1)
        if first:
            self.n_outputs_ = y.shape[1]
        elif y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} targets but the network was fitted "
                             f"with {self.n_outputs_}")
        return X, y

    def _n_outputs(self):
        return self.n_outputs_

    def fit(self, X, y, sample_weight=None):
        """Train a new network on X (n_samples, n_features) and targets y
        (n_samples,) or (n_samples, n_targets).

        sample_weight : array (n_samples,) >= 0 or None; each batch's loss becomes
            sum_i w_i l_i / sum_i w_i.

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) from the current weights and optimizer state (a new
        network on the first call). Returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """o (n_samples,) for one target, else (n_samples, n_targets)."""
        out = self._forward(X)
        return out[:, 0] if out.shape[1] == 1 else out
