"""Estimators that record what their fit had, for the searches of tests/test_dask.py: a
module of its own, light to import, because every worker of the searches imports it
(the estimators are pickled by reference to their module)."""
import time

import nncore
from nncore.sklearn import NNClassifier, NNRegressor


class _Measured:
    """Records, around fit, nncore's thread count and three clocks: wall, the CPU of
    the whole process and the CPU of the calling thread. In a process that fits on one
    thread the two CPU times differ only by the process's other work (Dask's event
    loop, a few ms); a second nncore thread would add its share of the GEMMs."""

    def fit(self, X, y, sample_weight=None):
        self.fit_threads_ = nncore.get_num_threads()
        wall, process, thread = time.perf_counter(), time.process_time(), time.thread_time()
        super().fit(X, y, sample_weight)
        self.fit_clocks_ = (time.perf_counter() - wall, time.process_time() - process,
                            time.thread_time() - thread)
        return self


class MeasuredClassifier(_Measured, NNClassifier):
    pass


class MeasuredRegressor(_Measured, NNRegressor):
    pass


def score(estimator, X, y):
    """The estimator's own score: accuracy (classifier), R^2 (regressor)."""
    return estimator.score(X, y)


def threads(estimator, X, y):
    return float(estimator.fit_threads_)


def wall(estimator, X, y):
    return estimator.fit_clocks_[0]


def process_cpu(estimator, X, y):
    return estimator.fit_clocks_[1]


def thread_cpu(estimator, X, y):
    return estimator.fit_clocks_[2]


# the estimator's score and what the fit recorded, as the scorers of a search
SCORING = {"score": score, "threads": threads, "wall": wall, "process_cpu": process_cpu,
           "thread_cpu": thread_cpu}
