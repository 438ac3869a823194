"""Many models at once: scikit-learn's searches over NNClassifier and NNRegressor under
joblib.parallel_backend("dask") on a dask.distributed LocalCluster, and on joblib's own
loky processes, give the cv_results_ scores of the serial search, bitwise (the same
random_state, so the same networks); and nncore uses the threads each worker has, one
per Dask thread (nncore._threads, step 4), never more: the CPU a worker process burns
while it fits is the fitting thread's own.

Dask is the optional `dask` extra (dask[distributed]): .ci/run installs it and runs this
file; elsewhere its tests are skipped with a note. The loky test needs scikit-learn only
(joblib comes with it). A LocalCluster of processes takes seconds to start and its
workers import scikit-learn and nncore on their first task, so one cluster serves the
searches and the example.
"""
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")

import joblib  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402

import nncore  # noqa: E402
from nncore import _threads  # noqa: E402
from nncore._kernels.openmp import omp_max_threads  # noqa: E402
from nncore.sklearn import NNClassifier, NNRegressor  # noqa: E402
# the searches' estimators that record what each fit had (their own module: see there)
from measured import SCORING, MeasuredClassifier, MeasuredRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CV = 3
SCORES = [f"split{i}_test_score" for i in range(CV)] + [
    "mean_test_score", "std_test_score", "rank_test_score"]

try:
    import distributed
    from distributed import Client, LocalCluster
except ImportError:
    distributed = None
needs_dask = pytest.mark.skipif(
    distributed is None, reason='dask.distributed is not installed: the `dask` extra, '
    'pip install -e ".[dask]" (.ci/run installs it and runs this file)')
needs_openmp = pytest.mark.skipif(not nncore.openmp_enabled(),
                                  reason="a build without OpenMP always runs one thread")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def classification():
    """300 rows of 32 features, 3 classes, float32."""
    X, y = make_classification(n_samples=300, n_features=32, n_informative=12,
                               n_classes=3, random_state=0)
    return X.astype(np.float32), y


def regression():
    X, y = make_regression(n_samples=300, n_features=32, n_informative=12, noise=5.0,
                           random_state=0)
    return X.astype(np.float32), y / y.std()


# Each fit: 200 training rows, one batch an epoch; the GEMMs of a step (90 MFLOP in
# all) are where nncore starts a second thread when it has one, and a fit takes ~80 ms
# of CPU, long enough to see a second thread's share of it.
BASE = dict(hidden_layer_sizes=(256, 256), max_iter=40, random_state=0)
GRID = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 3e-3]}


# ONE_THREAD_HERE: the serial searches and the refits run on one thread in this process.
# Their result is bitwise the same on any number (tests/test_sklearn.py's n_threads
# tests); but on a host whose 2 cores other processes keep busy, a 2-thread fit waits at
# every barrier for a descheduled thread: measured here, a serial search took 11-16 s on
# 2 threads against 1 s on one. The workers' counts are their own (a threads() block
# does not travel with a task).


def searches(kind):
    """(the serial search with the plain estimator and scoring, the measured search
    with the same candidates and seeds)."""
    if kind == "grid-classifier":
        return (GridSearchCV(NNClassifier(**BASE), GRID, cv=CV),
                GridSearchCV(MeasuredClassifier(**BASE), GRID, cv=CV,
                             scoring=SCORING, refit="score"))
    distributions = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2],
                     "learning_rate_init": [5e-4, 1e-3, 2e-3, 4e-3]}
    return (RandomizedSearchCV(NNRegressor(**BASE), distributions, n_iter=4, cv=CV,
                               random_state=0),
            RandomizedSearchCV(MeasuredRegressor(**BASE), distributions, n_iter=4, cv=CV,
                               random_state=0, scoring=SCORING, refit="score"))


def data(kind):
    return classification() if kind == "grid-classifier" else regression()


def per_fit(result, name):
    """The value every fit of the search reported for `name`, one per candidate and fold."""
    return np.concatenate([result.cv_results_[f"split{i}_test_{name}"] for i in range(CV)])


def assert_same_search(serial, measured):
    """The same candidates, the same scores per fold, ranks and best, bitwise, and the
    same refitted network."""
    assert [p for p in serial.cv_results_["params"]] == \
        [p for p in measured.cv_results_["params"]]
    for key in SCORES:
        a, b = serial.cv_results_[key], measured.cv_results_[key]
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), key
    assert serial.best_params_ == measured.best_params_
    assert serial.best_score_ == measured.best_score_
    for p, q in zip(serial.best_estimator_.model_.parameters(),
                    measured.best_estimator_.model_.parameters()):
        assert p.tobytes() == q.tobytes()


def assert_fits_on_one_thread(measured):
    """nncore had one thread in every fit, and the fitting processes burned about the
    fitting threads' CPU: at most 25% more, plus 30 ms a fit, for the rest of a Dask
    worker (its event loop, heartbeats, the memory monitor: measured 15-22% of these
    fits, on a busy host). A second nncore thread in each worker doubles it and more
    (measured 2.4 times, with OMP_NUM_THREADS=2 in both workers on 2 cores)."""
    assert set(per_fit(measured, "threads")) == {1}
    process, thread = per_fit(measured, "process_cpu"), per_fit(measured, "thread_cpu")
    assert process.sum() <= 1.25 * thread.sum() + 0.03 * len(thread), \
        (process.sum(), thread.sum())


# ---- a LocalCluster of two processes of one thread each -----------------------------------

@pytest.fixture
def restore_environ():
    """Dask's nanny writes its pre-spawn-environ (OMP_NUM_THREADS=1, ...) into this
    process's os.environ before it starts a worker: restored afterwards, so that later
    tests' child processes see the environment of before."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def cluster():
    """LocalCluster(n_workers=2, threads_per_worker=1, processes=True): the workers are
    processes started by Dask's nanny, with its default environment."""
    saved = dict(os.environ)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield cluster, client
    os.environ.clear()
    os.environ.update(saved)


@needs_dask
@needs_openmp
@pytest.mark.parametrize("kind", ["grid-classifier", "randomized-regressor"])
def test_search_on_dask_is_the_serial_search(cluster, kind):
    """The search under joblib.parallel_backend("dask") gives the serial search's scores
    bitwise; every fit ran in a worker on one nncore thread, and the workers together
    used at most their 2 threads' worth of CPU per wall second."""
    _, client = cluster
    X, y = data(kind)
    serial, measured = searches(kind)
    with nncore.threads(1):                     # here (see ONE_THREAD_HERE)
        serial.fit(X, y)
        before = client.run(time.process_time)
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            measured.fit(X, y)
        wall = time.perf_counter() - start
    cpu = sum(t - before[w] for w, t in client.run(time.process_time).items())
    assert_same_search(serial, measured)
    assert_fits_on_one_thread(measured)
    # the workers' CPU seconds per wall second: within their 2 threads (and so the
    # cores), 10% and 0.2 s for their event loops and the data they unpickle
    assert cpu <= 2 * 1.1 * wall + 0.2, (cpu, wall)


@needs_dask
@needs_openmp
def test_example_runs_on_the_cluster(cluster):
    """examples/search_dask.py on the running cluster (--scheduler) prints that its Dask
    search gave the serial search's scores, and nncore had one thread in each fit."""
    local, _ = cluster
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "search_dask.py"), "--fast",
         "--scheduler", local.scheduler_address], capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nncore threads in each fit: [1]\n" in result.stdout
    assert "same cv_results_ scores as the serial search: yes\n" in result.stdout
    assert "12 fits on 2 Dask workers, 2 threads in all\n" in result.stdout


# ---- workers where nothing set OMP_NUM_THREADS ---------------------------------------------

@needs_dask
@needs_openmp
def test_worker_processes_without_omp_num_threads(monkeypatch, restore_environ):
    """Workers whose nanny sets no OMP_NUM_THREADS (pre-spawn-environ emptied, as a
    worker started without a nanny has none): the OpenMP runtime would give each task
    every CPU; nncore gives it one, and threads(n) and set_num_threads still win."""
    import dask

    # defined here, pickled by value: the workers import nncore only
    def probe(_):
        """nncore's thread count, the OpenMP runtime's, and the CPU clocks of a fit
        large enough to thread (GEMMs of 128 x 256 x 256)."""
        X = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.intp)
        model = nncore.MLP([64, 256, 256, 2], seed=0)
        threads = nncore.get_num_threads()
        process, thread = time.process_time(), time.thread_time()
        model.fit(X, y, loss="softmax_cross_entropy",
                  optimizer=nncore.optim.SGD(lr=0.01), epochs=4, batch_size=128)
        return dict(nncore=threads, omp=omp_max_threads(),
                    env=os.environ.get("OMP_NUM_THREADS"),
                    process=time.process_time() - process,
                    thread=time.thread_time() - thread)

    def with_threads(n):
        with nncore.threads(n):
            return nncore.get_num_threads()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as local, Client(local) as client:
        probes = client.gather(client.map(probe, range(4), pure=False))
        assert {p["env"] for p in probes} == {None}
        assert {p["omp"] for p in probes} == {len(os.sched_getaffinity(0))}  # every CPU
        assert {p["nncore"] for p in probes} == {1}
        process = sum(p["process"] for p in probes)
        thread = sum(p["thread"] for p in probes)
        assert process <= 1.25 * thread + 0.03 * len(probes), (process, thread)
        assert client.submit(with_threads, 2, pure=False).result() == 2
        client.run(nncore.set_num_threads, 2)
        assert client.gather(client.map(lambda i: nncore.get_num_threads(), range(2),
                                        pure=False)) == [2, 2]


@needs_dask
@pytest.mark.parametrize("context_variable", [True, False])
def test_workers_in_threads_of_this_process(monkeypatch, context_variable):
    """LocalCluster(processes=False): the workers' tasks run in threads of this process,
    whose OpenMP runtime gives every thread all the CPUs; a task gets one nncore thread,
    the test's own thread keeps the runtime's count. Through distributed's context
    variable and, where it is missing, through distributed.get_worker()."""
    def with_threads(n):
        with nncore.threads(n):
            return nncore.get_num_threads()

    if not context_variable:
        monkeypatch.setattr(_threads, "_WORKER_CVAR", "_no_such_variable")
    # as if OMP_NUM_THREADS had been unset when nncore was imported (CI sets none)
    monkeypatch.setattr(_threads, "_omp_env_set", False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as local, Client(local) as client:
        counts = client.gather(client.map(lambda i: nncore.get_num_threads(), range(4),
                                          pure=False))
        assert counts == [1] * 4
        assert client.submit(_threads.resolve_num_threads, None, pure=False).result() == 1
        assert client.submit(with_threads, 2, pure=False).result() == 2
        assert nncore.get_num_threads() == omp_max_threads()       # not a task
        monkeypatch.setattr(_threads, "_omp_env_set", True)        # OMP_NUM_THREADS decides
        assert client.submit(nncore.get_num_threads, pure=False).result() == omp_max_threads()


# ---- joblib's loky processes ----------------------------------------------------------------

@needs_openmp
def test_search_on_loky_is_the_serial_search(restore_environ):
    """n_jobs=2 on joblib's loky processes: the serial search's scores, bitwise; loky
    sets OMP_NUM_THREADS = CPUs // n_jobs in its workers (unless this process has one),
    and nncore follows it."""
    X, y = data("grid-classifier")
    serial, measured = searches("grid-classifier")
    with nncore.threads(1):                     # here (see ONE_THREAD_HERE)
        serial.fit(X, y)
        with joblib.parallel_backend("loky"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            measured.set_params(n_jobs=2).fit(X, y)
    assert_same_search(serial, measured)
    budget = int(os.environ.get("OMP_NUM_THREADS", max(joblib.cpu_count() // 2, 1)))
    assert set(per_fit(measured, "threads")) == {budget}
    if budget == 1:
        assert_fits_on_one_thread(measured)
