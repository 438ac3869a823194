"""scikit-learn estimators that train nncore MLPs: NNClassifier and NNRegressor.

    model_  = MLP([n_features_in_, *hidden_layer_sizes, n_outputs_], activation)
    fit     : up to max_iter epochs of minibatch SGD or Adam, each epoch in the compiled core
    predict : classes_[argmax_j o_j] (classifier), o (regressor), o = model_.output(X)

The parameters take scikit-learn's MLPClassifier / MLPRegressor names, defaults and
meanings where the two overlap (solver, learning_rate_init, learning_rate, alpha,
batch_size="auto", tol, n_iter_no_change, early_stopping, warm_start, ...), and the
fitted attributes are theirs (coefs_, intercepts_, loss_curve_, best_loss_,
validation_scores_, n_iter_, t_, ...): code written for MLPClassifier runs with
NNClassifier swapped in. docs/sklearn.md lists where the two still differ.

The estimators follow scikit-learn's conventions: the constructor only stores its
parameters, fit checks them and the data (sklearn's validate_data) and sets the fitted
attributes that end in "_"; get_params/set_params, clone, Pipeline, GridSearchCV and
pickle work as for scikit-learn's own estimators.

scikit-learn (>= 1.6) is optional for nncore: this module needs it, `import nncore`
does not import it (pip install "nncore-mlp[datasets]").
"""
from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data   # 1.6
except ImportError as exc:           # scikit-learn is an optional dependency
    raise ImportError(
        'nncore.sklearn needs scikit-learn >= 1.6, which nncore does not install by '
        'default: pip install "nncore-mlp[datasets]" (in a checkout: pip install -e ".[datasets]")') from exc

from nncore import _checks, optim
from nncore._threads import threads
from nncore.layers import positive_int
from nncore.model import MLP

if TYPE_CHECKING:
    import numpy.typing as npt
    from sklearn.utils import Tags

__all__ = ["NNClassifier", "NNRegressor"]

_SOLVERS = ("adam", "sgd")
_SCHEDULES = ("constant", "invscaling", "adaptive")
# scikit-learn's four names first ('logistic' is nncore's 'sigmoid'), then nncore's own
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "softplus": "softplus",
                "step": "step"}
_MIN_ADAPTIVE_LR = 1e-6      # 'adaptive' stops once the rate is this small (scikit-learn's)


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _unit_interval(value, name, *, closed_right):
    value = _checks.real_scalar(value, name)
    if not (0 <= value <= 1 if closed_right else 0 <= value < 1):
        raise ValueError(f"{name} must lie in [0, 1{']' if closed_right else ')'}, got {value}")
    return value


class _BaseNN(BaseEstimator):
    """What NNClassifier and NNRegressor share: checks, the network, the training loop.

    Subclasses define __init__ (scikit-learn reads the parameters from its
    signature), _LOSSES, and _targets/_n_outputs/_nncore_loss/_score_val for their
    kind of y.
    """

    _LOSSES: tuple[str, ...] = ()

    # ---- parameters --------------------------------------------------------

    def _store(self, params):
        """Keep each constructor argument as the attribute of its name (all __init__
        does, as scikit-learn requires)."""
        for name in self._get_param_names():
            setattr(self, name, params[name])

    def _check_params(self):
        """The parameters checked (errors name the estimator's parameter, not nncore's);
        returns (hidden layer sizes as a tuple, nncore's activation name, dtype)."""
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
        activation = _ACTIVATIONS[_checks.choice(self.activation, "activation",
                                                 tuple(_ACTIVATIONS))]
        _checks.choice(self.loss, "loss", self._LOSSES)
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported: nncore trains by minibatch "
                             "gradient descent; use solver='adam' or 'sgd' (for a small data "
                             "set, batch_size=n_samples gives full-batch steps)")
        _checks.choice(self.solver, "solver", _SOLVERS)
        if isinstance(self.learning_rate, numbers.Real) and not isinstance(self.learning_rate,
                                                                           (bool, np.bool_)):
            raise TypeError(f"learning_rate is the schedule ('constant', 'invscaling' or "
                            f"'adaptive'), as in scikit-learn; the rate itself is "
                            f"learning_rate_init (got learning_rate={self.learning_rate!r})")
        _checks.choice(self.learning_rate, "learning_rate", _SCHEDULES)
        _checks.real_scalar(self.learning_rate_init, "learning_rate_init", positive=True)
        _checks.real_scalar(self.power_t, "power_t", nonnegative=True)
        _checks.real_scalar(self.alpha, "alpha", nonnegative=True)
        _unit_interval(self.momentum, "momentum", closed_right=True)
        _flag(self.nesterovs_momentum, "nesterovs_momentum")
        _unit_interval(self.beta_1, "beta_1", closed_right=False)
        _unit_interval(self.beta_2, "beta_2", closed_right=False)
        _checks.real_scalar(self.epsilon, "epsilon", positive=True)
        positive_int(self.max_iter, "max_iter")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, "
                                 f"got {self.batch_size!r}")
            positive_int(self.batch_size, "batch_size")
        for name in ("shuffle", "warm_start", "early_stopping"):
            _flag(getattr(self, name), name)
        fraction = _checks.real_scalar(self.validation_fraction, "validation_fraction")
        if not 0 < fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {fraction}")
        positive_int(self.n_iter_no_change, "n_iter_no_change")
        _checks.real_scalar(self.tol, "tol", nonnegative=True)
        if not isinstance(self.verbose, (numbers.Integral, np.bool_)) or self.verbose < 0:
            raise TypeError(f"verbose must be a bool or an int >= 0, got {self.verbose!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.n_threads is not None:
            positive_int(self.n_threads, "n_threads")
        return sizes, activation, dtype

    def _make_optimizer(self):
        """scikit-learn's SGD and Adam in nncore's form (docs/sklearn.md: the momentum
        convention and Adam's epsilon differ by rounding-level terms)."""
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return optim.SGD(lr=self.learning_rate_init, momentum=momentum,
                             nesterov=bool(self.nesterovs_momentum) and momentum > 0)
        return optim.Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                          eps=self.epsilon)

    def _threads(self):
        """nncore.threads(n_threads) around the compiled calls (nothing for None)."""
        if self.n_threads is None:
            return contextlib.nullcontext()
        return threads(positive_int(self.n_threads, "n_threads"))

    # ---- fitted attributes in scikit-learn's layout -----------------------------

    @property
    def coefs_(self) -> list[np.ndarray]:
        """[W_1.T, W_2.T, ...]: the weight of layer i as (n_in, n_out), scikit-learn's
        layout (views of model_'s (n_out, n_in) weights: writing them changes the model)."""
        check_is_fitted(self, "model_")
        return [layer.weight.T for layer in self.model_.layers]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """[b_1, b_2, ...], each (n_out,) (views of model_'s biases)."""
        check_is_fitted(self, "model_")
        return [layer.bias for layer in self.model_.layers]

    @property
    def n_layers_(self) -> int:
        """Layers counting the input: len(hidden_layer_sizes) + 2."""
        check_is_fitted(self, "model_")
        return len(self.model_.layers) + 1

    @property
    def n_outputs_(self) -> int:
        """Output units: the number of targets (regressor), of classes (classifier;
        1 for two classes with the logistic output)."""
        check_is_fitted(self, "model_")
        return self.model_.n_outputs

    # ---- training ----------------------------------------------------------

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        """fit (incremental=False: max_iter epochs at most, a new network unless
        warm_start) or partial_fit (one epoch, from the current network and optimizer
        when there is one), in scikit-learn's MLP's steps (_fit_stochastic)."""
        sizes, activation, dtype = self._check_params()
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y, labels = self._targets(X, y, dtype, first, incremental, classes)
        n = X.shape[0]
        if sample_weight is not None:
            sample_weight = _checks.sample_weights(np.asarray(sample_weight), "sample_weight",
                                                   n)
        sample_weight = self._class_weights(sample_weight, labels, incremental)

        # rng draws in scikit-learn's order: initial weights, validation split, then
        # (nncore's own) the seed of the model's shuffling
        rng = check_random_state(self.random_state)
        if first:
            units = [X.shape[1], *sizes, self._n_outputs()]
            drawn = _sklearn_initial_weights(units, self.activation, rng)
        early_stopping = self.early_stopping and not incremental
        validation = None
        if early_stopping:
            X, y, sample_weight, validation = self._split(X, y, labels, sample_weight, rng)
        if first:
            self.model_ = MLP(units, activation, init="xavier", dtype=dtype,
                              seed=int(rng.randint(np.iinfo(np.int32).max)))
            for layer, (W, b) in zip(self.model_.layers, drawn):
                layer.weight[...] = W.T
                layer.bias[...] = b
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.__dict__.pop("_best_parameters", None)     # a previous network's
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_ = self.best_validation_score_ = None
                self.best_loss_ = np.inf
        if early_stopping and self.validation_scores_ is None:   # warm_start, turned on
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        model = self.model_
        if not incremental or model.optimizer is None:
            optimizer = self._make_optimizer()   # fit starts a new one, as scikit-learn's
        else:
            optimizer = model.optimizer          # partial_fit goes on with its state

        n = X.shape[0]
        if isinstance(self.batch_size, str):                  # "auto"
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(f"batch_size={self.batch_size} is larger than the "
                              f"{n} training samples: clipped to {n}", UserWarning,
                              stacklevel=3)
            batch_size = min(int(self.batch_size), n)
        # scikit-learn's penalty is alpha/2 ||W||^2 / (weight of the batch); nncore's l2 is
        # one number per fit, so the batch's weight is taken as batch_size * the mean weight
        mean_weight = 1.0 if sample_weight is None else float(sample_weight.mean())
        model.l2 = float(self.alpha) / (batch_size * mean_weight)
        sgd_schedule = self.learning_rate if self.solver == "sgd" else "constant"

        self.n_iter_ = 0
        with self._threads():
            for _ in range(1 if incremental else self.max_iter):
                history = model.fit(X, y, loss=self._nncore_loss(), optimizer=optimizer,
                                    epochs=1, batch_size=batch_size, shuffle=self.shuffle,
                                    sample_weight=sample_weight)
                if history.interrupted:
                    warnings.warn("Training interrupted by user.", UserWarning, stacklevel=3)
                    break
                self.n_iter_ += 1
                self.loss_ = float(history["loss"][-1])
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(validation)
                if sgd_schedule == "invscaling":
                    _set_lr(optimizer, float(self.learning_rate_init)
                            / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = ("Validation score" if early_stopping else "Training loss")
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if sgd_schedule != "adaptive" or optimizer.lr <= _MIN_ADAPTIVE_LR:
                        if self.verbose:
                            print(msg + (" Stopping." if sgd_schedule != "adaptive" else
                                         " Learning rate too small. Stopping."))
                        break
                    _set_lr(optimizer, optimizer.lr / 5.0)
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(msg + f" Setting learning rate to {optimizer.lr:f}")
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  f"reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=3)
        if early_stopping and hasattr(self, "_best_parameters"):
            for p, best in zip(model.parameters(), self._best_parameters):
                p[...] = best                           # the best epoch's weights
        return self

    def _split(self, X, y, labels, sample_weight, rng):
        """Hold out validation_fraction of the rows (train_test_split's count),
        stratified for classifiers when every class has room on both sides. Returns
        the training X, y, sample_weight and validation (X, targets to score, weights).
        Rows of weight 0 are dropped first, as if absent (a validation set of them
        would have no score)."""
        if sample_weight is not None and not sample_weight.all():
            keep = sample_weight > 0
            X, y, sample_weight = X[keep], y[keep], sample_weight[keep]
            labels = None if labels is None else labels[keep]
        n = X.shape[0]
        n_val = int(np.ceil(self.validation_fraction * n))
        least = 1 if labels is not None else 2          # R^2 needs two samples
        if n_val < least or n_val >= n:
            raise ValueError(f"early_stopping holds out validation_fraction="
                             f"{self.validation_fraction} of n_samples={n}: {n_val} "
                             f"validation and {n - n_val} training samples; it needs at "
                             f"least {least} and 1 (increase validation_fraction or the data)")
        stratify = None
        if labels is not None:
            counts = np.bincount(labels)
            counts = counts[counts > 0]
            if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
                stratify = labels
        train, val = train_test_split(np.arange(n), test_size=n_val, random_state=rng,
                                      stratify=stratify)
        w = w_val = None
        if sample_weight is not None:
            w, w_val = sample_weight[train], sample_weight[val]
        scored = y if labels is None else labels
        return X[train], y[train], w, (X[val], scored[val], w_val)

    def _update_no_improvement_count(self, validation):
        """scikit-learn's rule: an epoch counts as no improvement when the validation
        score is below best_validation_score_ + tol (early_stopping), else when the
        training loss is above best_loss_ - tol."""
        if validation is not None:
            X_val, y_val, w_val = validation
            score = self._score_val(self.model_.output(X_val), y_val, w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:    # kept for a warm_start fit too,
                self.best_validation_score_ = score    # as scikit-learn keeps _best_coefs
                self._best_parameters = [p.copy() for p in self.model_.parameters()]
        else:           # best_loss_ is None after a fit with early_stopping
            best = np.inf if self.best_loss_ is None else self.best_loss_
            if self.loss_curve_[-1] > best - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < best:
                self.best_loss_ = self.loss_curve_[-1]

    def _class_weights(self, sample_weight, labels, incremental):
        return sample_weight

    def _forward(self, X):
        """The network's outputs o (n, n_outputs) for X, in float64 (scikit-learn's
        convention for predictions, whatever the network's dtype)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=self.model_.dtype, reset=False)
        with self._threads():          # in blocks of rows: the workspaces stay small
            return np.asarray(self.model_.output(X), dtype=np.float64)


def _set_lr(optimizer, lr):
    """A new rate for the next epoch, in scikit-learn's momentum convention.

    scikit-learn keeps v = momentum v - lr g (w += v), nncore's SGD keeps
    b = momentum b + g (w -= lr b): the same steps while lr stays, v = -lr b. When lr
    changes, scaling b by lr_old / lr_new keeps v, and so scikit-learn's next steps."""
    velocity = optimizer.state.get("velocity") if isinstance(optimizer, optim.SGD) else None
    for v in velocity or ():
        v *= optimizer.lr / lr
    optimizer.lr = lr


def _sklearn_initial_weights(units, activation, rng):
    """scikit-learn's MLP initialisation (_init_coef), drawn from rng in its order:
    per layer W (n_in, n_out) then b (n_out,), both U(-l, l) with
    l = sqrt(factor / (n_in + n_out)), factor 2 for a logistic network, else 6. With
    the same random_state the network starts where MLPClassifier's would."""
    factor = 2.0 if activation == "logistic" else 6.0
    drawn = []
    for n_in, n_out in zip(units[:-1], units[1:]):
        bound = np.sqrt(factor / (n_in + n_out))
        drawn.append((rng.uniform(-bound, bound, (n_in, n_out)),
                      rng.uniform(-bound, bound, n_out)))
    return drawn


def _init_docstring(loss_doc):
    return f"""
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units per hidden layer; () trains a linear model.
    activation : str, default="relu"
        Hidden-layer activation: scikit-learn's "identity", "logistic", "tanh", "relu",
        or nncore's "sigmoid" (= "logistic"), "leaky_relu", "softplus", "step".
{loss_doc}
    solver : {{"adam", "sgd"}}, default="adam"
        "lbfgs" is refused with a ValueError: nncore only takes minibatch steps.
    alpha : float >= 0, default=0.0001
        L2 penalty, as scikit-learn's: each step's loss gains
        alpha/2 sum_l ||W_l||^2 / (weight of the batch) (weights, not biases). nncore
        takes the weight of a batch as batch_size times the mean sample weight, so
        the last, shorter batch of an epoch is penalized as a full one.
    batch_size : int >= 1 or "auto", default="auto"
        Samples per step; "auto" is min(200, n_samples). Larger than the training
        set: clipped, with a warning.
    learning_rate : {{"constant", "invscaling", "adaptive"}}, default="constant"
        The step-size schedule, solver="sgd" only (scikit-learn's):
        constant: learning_rate_init; invscaling: after each epoch
        learning_rate_init / (t_ + 1) ** power_t (t_ counts samples seen);
        adaptive: learning_rate_init until n_iter_no_change + 1 epochs in a row fail
        to improve by tol (the training loss, or the validation score with
        early_stopping); then divided by 5 and the count starts over, until it falls
        to 1e-6 or below, when training stops.
    learning_rate_init : float > 0, default=0.001
    power_t : float >= 0, default=0.5
        The exponent of invscaling.
    max_iter : int >= 1, default=200
        The most epochs (passes over the data) fit runs; a ConvergenceWarning says when
        it ran all of them.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffling and the validation split: an int gives
        bitwise the same network on every fit, whatever n_threads.
    tol : float >= 0, default=1e-4
        Training stops when n_iter_no_change + 1 epochs in a row improve the training
        loss by less than tol (or, with early_stopping, the validation score), unless
        learning_rate="adaptive" lowers the rate instead.
    verbose : bool, default=False
        Print the loss of each epoch (and the validation score), as scikit-learn does.
    warm_start : bool, default=False
        fit starts from the previous fit's network (a new optimizer; loss_curve_, t_
        and best_loss_ go on) instead of a new one.
    momentum : float in [0, 1], default=0.9
        solver="sgd" only.
    nesterovs_momentum : bool, default=True
        solver="sgd" with momentum > 0 only.
    early_stopping : bool, default=False
        Hold out validation_fraction of the samples (a random split, stratified for
        classifiers when every class has room on both sides), stop when the
        validation score (score(): accuracy or R^2) has not improved by tol for
        n_iter_no_change + 1 epochs in a row, and keep the weights of the best epoch.
        partial_fit never holds samples out.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        solver="adam" only.
    epsilon : float > 0, default=1e-8
        solver="adam" only.
    n_iter_no_change : int >= 1, default=10
    dtype : {{"float32", "float64"}}, default="float32"
        nncore's: precision of the weights and of the arithmetic.
    n_threads : int >= 1 or None, default=None
        nncore's: threads for the kernels during fit and predict (None: nncore's
        setting, nncore.get_num_threads()).

    A NaN or inf loss stops fit with nncore.TrainingDiverged (try a smaller
    learning_rate_init); GridSearchCV then scores that candidate error_score.

    Attributes
    ----------
    model_ : nncore.Sequential
        The trained network.
    coefs_ : list of ndarray (n_in, n_out)
        Layer weights in scikit-learn's layout (views of model_'s weights).
    intercepts_ : list of ndarray (n_out,)
    n_layers_ : int
        len(hidden_layer_sizes) + 2.
    n_outputs_ : int
    out_activation_ : str
    loss_ : float
        The mean training loss of the last epoch (penalty included).
    loss_curve_ : list of float
        loss_ of every epoch, over all fits (warm_start) and partial_fits.
    best_loss_ : float or None
        The least training loss seen; None with early_stopping.
    validation_scores_ : list of float or None
        The validation score of each epoch, with early_stopping (else None).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last fit (1 after partial_fit).
    t_ : int
        Training samples seen by the optimizers, over all fits and partial_fits.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names (a DataFrame).
"""


class NNClassifier(ClassifierMixin, _BaseNN):
    __doc__ = """A multi-layer perceptron classifier trained by nncore.

        o = MLP(x),  p = softmax(o),  predict(x) = classes_[argmax_j o_j]

    Class labels may be ints, whole floats (0.0, 1.0, ...), strings or other
    objects; classes_ keeps them and predict returns them. With two classes and the
    default loss the network has one logistic output, as scikit-learn's
    MLPClassifier: p(classes_[1]) = sigmoid(o).
    """ + _init_docstring("""\
    loss : {"softmax_cross_entropy", "hinge"}, default="softmax_cross_entropy"
        softmax_cross_entropy (scikit-learn's log-loss): L = mean_i logsumexp(o_i) -
        o_i[y_i], for two classes the binary cross-entropy of one logistic output;
        with predict_proba.
        hinge: the multiclass SVM loss mean_i sum_{j != y_i} max(0, o_ij - o_iy_i + 1),
        one output per class, without predict_proba.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplying sample_weight: {label: weight} (labels
        absent weigh 1), or "balanced": n_samples / (n_classes * count of the class),
        as scikit-learn's other classifiers (compute_class_weight). partial_fit takes
        a dict only (the counts of one chunk are not the class frequencies).""") + """\
    classes_ : ndarray (n_classes,)
        The class labels, sorted.
    """

    _LOSSES = ("softmax_cross_entropy", "hinge")

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: int | np.random.RandomState | None = None,
                 tol: float = 1e-4, verbose: int = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10,
                 class_weight: dict[Any, float] | str | None = None,
                 loss: str = "softmax_cross_entropy", dtype: npt.DTypeLike = "float32",
                 n_threads: int | None = None) -> None:
        self._store(locals())

    def _logistic(self):
        """Two classes and the log-loss: one output, binary cross-entropy (as sklearn)."""
        return len(self.classes_) == 2 and self.loss == "softmax_cross_entropy"

    @property
    def out_activation_(self) -> str:
        """'logistic' (two classes), 'softmax', or 'identity' (hinge)."""
        check_is_fitted(self, "model_")
        if self.loss == "hinge":
            return "identity"
        return "logistic" if self.model_.n_outputs == 1 and len(self.classes_) == 2 else \
            "softmax"

    def _nncore_loss(self):
        return "binary_cross_entropy" if self._logistic() else self.loss

    def _targets(self, X, y, dtype, first, incremental, classes):
        X, y = validate_data(self, X, y, dtype=dtype, reset=first)
        check_classification_targets(y)
        if incremental and not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit "
                                 "(all the labels y may hold, e.g. classes=np.unique(y_all))")
            self.classes_ = np.unique(np.asarray(classes))
        elif incremental:
            if classes is not None and not np.array_equal(self.classes_,
                                                          np.unique(np.asarray(classes))):
                raise ValueError(f"classes={classes!r} differs from classes_={self.classes_!r} "
                                 f"of the first call to partial_fit")
        elif first:
            self.classes_ = np.unique(y)
        elif not np.array_equal(np.unique(y), self.classes_):     # fit with warm_start
            raise ValueError(f"warm_start needs y to hold the classes of the previous fit, "
                             f"classes_={self.classes_!r}; y holds {np.unique(y)!r}")
        labels = np.searchsorted(self.classes_, y)
        unseen = (labels >= len(self.classes_)) | (
            self.classes_[np.minimum(labels, len(self.classes_) - 1)] != y)
        if unseen.any():
            raise ValueError(f"y contains previously unseen labels: {np.unique(y[unseen])!r}; "
                             f"partial_fit knows classes_={self.classes_!r}")
        labels = labels.astype(np.intp)
        target = labels.astype(dtype).reshape(-1, 1) if self._logistic() else labels
        return X, target, labels

    def _n_outputs(self):
        return 1 if self._logistic() else len(self.classes_)

    def _class_weights(self, sample_weight, labels, incremental):
        if self.class_weight is None:
            return sample_weight
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            if incremental:
                raise ValueError("class_weight='balanced' is not supported by partial_fit "
                                 "(one chunk's class counts are not the data's): pass a dict, "
                                 "e.g. from sklearn.utils.class_weight.compute_class_weight")
        elif not isinstance(self.class_weight, dict):
            raise TypeError(f"class_weight must be None, 'balanced' or a dict "
                            f"{{label: weight}}, got {self.class_weight!r}")
        if isinstance(self.class_weight, dict):
            per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                             y=self.classes_[labels])
        else:             # 'balanced' over the classes y holds (fit: all of classes_)
            present = np.unique(labels)
            per_class = np.ones(len(self.classes_))
            per_class[present] = compute_class_weight("balanced",
                                                      classes=self.classes_[present],
                                                      y=self.classes_[labels])
        if not (np.isfinite(per_class).all() and (per_class >= 0).all()):
            raise ValueError(f"class_weight must be finite and >= 0, got {self.class_weight!r}")
        weights = per_class[labels]
        if sample_weight is not None:
            weights = weights * sample_weight
        return _checks.sample_weights(weights, "sample_weight * class_weight", len(labels))

    def _score_val(self, out, labels, sample_weight):
        return float(accuracy_score(labels, self._decide(out), sample_weight=sample_weight))

    def _decide(self, out):
        """Class indices from the outputs o."""
        if out.shape[1] == 1 and len(self.classes_) == 2:
            return (out[:, 0] > 0).astype(np.intp)
        return np.argmax(out, axis=1)

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike,
            sample_weight: npt.ArrayLike | None = None) -> NNClassifier:
        """Train on X (n_samples, n_features) and labels y (n_samples,): a new network
        (or, with warm_start, the current one) for up to max_iter epochs.

        sample_weight : array (n_samples,) >= 0 or None; each batch's loss becomes
            sum_i w_i l_i / sum_i w_i (times class_weight of y_i, when set).

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, classes: npt.ArrayLike | None = None,
                    sample_weight: npt.ArrayLike | None = None) -> NNClassifier:
        """One epoch over (X, y) from the current weights and optimizer state (a new
        network on the first call, which needs `classes`: every label y may ever hold).

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def decision_function(self, X: npt.ArrayLike) -> np.ndarray:
        """The network's outputs o (n_samples, n_classes); for two classes (n_samples,),
        > 0 where classes_[1] is predicted: o itself (logistic output) or o_1 - o_0
        (hinge)."""
        out = self._forward(X)
        if out.shape[1] == 1:
            return out[:, 0]
        return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        """classes_[argmax_j o_j] (n_samples,) (two classes: classes_[1] where o > 0)."""
        out = self._forward(X)
        return self.classes_[self._decide(out)]

    def _has_proba(self):
        return self.loss == "softmax_cross_entropy"

    @available_if(_has_proba)
    def predict_proba(self, X: npt.ArrayLike) -> np.ndarray:
        """p = softmax(o) (n_samples, n_classes), columns in the order of classes_;
        two classes: [1 - sigmoid(o), sigmoid(o)] (softmax_cross_entropy only)."""
        return np.exp(self.predict_log_proba(X))

    @available_if(_has_proba)
    def predict_log_proba(self, X: npt.ArrayLike) -> np.ndarray:
        """log p = o - logsumexp(o) (n_samples, n_classes); two classes:
        [-softplus(o), -softplus(-o)] (softmax_cross_entropy only)."""
        out = self._forward(X)
        if out.shape[1] == 1 and len(self.classes_) == 2:
            out = np.hstack([np.zeros_like(out), out])      # softmax([0, o]) = sigmoid
        out -= out.max(axis=1, keepdims=True)
        out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
        return out


class NNRegressor(RegressorMixin, _BaseNN):
    __doc__ = """A multi-layer perceptron regressor trained by nncore.

        o = MLP(x),  predict(x) = o

    y may be (n_samples,) or (n_samples, n_targets) numbers (strings are refused:
    use NNClassifier for labels); the network has one output per target.
    """ + _init_docstring("""\
    loss : {"squared_error", "mse"}, default="squared_error"
        L = mean_i 1/2 ||o_i - y_i||^2, scikit-learn's squared_error ("mse" is
        nncore's name for it). scikit-learn's "poisson" is not offered.""")

    _LOSSES = ("squared_error", "mse")

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: int | np.random.RandomState | None = None,
                 tol: float = 1e-4, verbose: int = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10,
                 loss: str = "squared_error", dtype: npt.DTypeLike = "float32",
                 n_threads: int | None = None) -> None:
        self._store(locals())

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @property
    def out_activation_(self) -> str:
        """'identity': the output layer is linear."""
        check_is_fitted(self, "model_")
        return "identity"

    def _nncore_loss(self):
        return "mse"

    def _targets(self, X, y, dtype, first, incremental, classes):
        _refuse_text_targets(y)
        X, y = validate_data(self, X, y, dtype=dtype, reset=first, multi_output=True,
                             y_numeric=True)
        y = np.asarray(y, dtype=dtype).reshape(y.shape[0], -1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} targets but the network was fitted "
                             f"with {self.n_outputs_}")
        self._y_shape = y.shape[1]
        return X, y, None

    def _n_outputs(self):
        return self._y_shape

    def _score_val(self, out, y, sample_weight):
        return float(r2_score(y, out, sample_weight=sample_weight))

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike,
            sample_weight: npt.ArrayLike | None = None) -> NNRegressor:
        """Train on X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_targets): a new network (or, with warm_start, the current one)
        for up to max_iter epochs.

        sample_weight : array (n_samples,) >= 0 or None; each batch's loss becomes
            sum_i w_i l_i / sum_i w_i.

        Returns self.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike,
                    sample_weight: npt.ArrayLike | None = None) -> NNRegressor:
        """One epoch over (X, y) from the current weights and optimizer state (a new
        network on the first call). Returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        """o (n_samples,) for one target, else (n_samples, n_targets)."""
        out = self._forward(X)
        return out[:, 0] if out.shape[1] == 1 else out


def _refuse_text_targets(y):
    """A ValueError naming y for strings (or bytes) among regression targets."""
    values = y if isinstance(y, np.ndarray) else np.asarray(getattr(y, "values", y),
                                                            dtype=object)
    if values.dtype.kind in "USO":
        flat = values.ravel()
        text = next((v for v in flat if isinstance(v, (str, bytes))), None) \
            if values.dtype.kind == "O" else (flat[0] if flat.size else None)
        if text is not None:
            raise ValueError(f"y must hold numbers for NNRegressor, got text such as "
                             f"{text!r} (dtype {values.dtype}); for class labels use "
                             f"NNClassifier")
