"""Many models at once: a scikit-learn grid search over NNClassifier on a Dask cluster,
the same cv_results_ scores as the serial search.

    python examples/search_dask.py                             # a LocalCluster, 2 x 1 thread
    python examples/search_dask.py --scheduler tcp://host:8786  # a cluster of many hosts
    python examples/search_dask.py --fast                      # 4 candidates, fewer epochs

GridSearchCV fits every candidate on every fold as a joblib task; under
joblib.parallel_backend("dask") the tasks run on the cluster's workers, one fit per Dask
thread, and nncore runs each fit on one thread there (docs/scaling-out.md). The script
runs the same search serially first, checks that the scores are the same bitwise, and
prints the thread count nncore had in each fit (a scorer reports it), the two wall times
and the CPU seconds the workers spent per wall second. Needs the dask extra:
pip install "nncore-mlp[dask,datasets]" (in a checkout: pip install -e ".[dask,datasets]").
"""
import argparse
import importlib
import sys
import time
import warnings

import numpy as np

import nncore
from nncore.datasets import digits

try:
    import joblib
    from dask.distributed import Client, LocalCluster
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from nncore.sklearn import NNClassifier
except ImportError as exc:
    sys.exit(f'this example needs Dask and scikit-learn ({exc}): pip install -e '
             f'".[dask,datasets]" in the nncore checkout (or pip install "nncore-mlp[dask,datasets]")')

CV = 3


def nncore_threads(estimator, X, y):
    """A scorer that reports nncore's thread count where the candidate was fitted."""
    return nncore.get_num_threads()


def search(fast):
    grid = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]}
    if not fast:
        grid["learning_rate_init"] = [1e-3, 3e-3]
    estimator = NNClassifier(max_iter=8 if fast else 40, batch_size=64, random_state=0)
    return GridSearchCV(estimator, grid, cv=CV, refit="accuracy",
                        scoring={"accuracy": "accuracy", "nncore_threads": nncore_threads})


def scores(result):
    """The columns of cv_results_ that hold accuracies and ranks (not times)."""
    keys = [f"split{i}_test_accuracy" for i in range(CV)]
    keys += ["mean_test_accuracy", "std_test_accuracy", "rank_test_accuracy"]
    return {key: result.cv_results_[key] for key in keys}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="address of a running Dask scheduler "
                        "(default: start a LocalCluster of 2 workers of 1 thread)")
    parser.add_argument("--fast", action="store_true", help="4 candidates of 8 epochs")
    args = parser.parse_args()
    # scikit-learn hands the filters to the fits it runs in joblib's workers
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X, y = digits(np.float32)

    start = time.perf_counter()
    serial = search(args.fast).fit(X, y)
    serial_s = time.perf_counter() - start

    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    with Client(args.scheduler or cluster) as client:
        workers = client.scheduler_info()["workers"].values()
        n_threads = sum(w["nthreads"] for w in workers)
        # import scikit-learn and nncore in each worker before the clock starts (about a
        # second each; `dask worker --preload nncore.sklearn` does it at start)
        client.run(importlib.import_module, "nncore.sklearn")
        cpu_before = client.run(time.process_time)
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            spread = search(args.fast).fit(X, y)
        dask_s = time.perf_counter() - start
        cpu = sum(t - cpu_before[w] for w, t in client.run(time.process_time).items())
    if cluster is not None:
        cluster.close()

    fits = len(spread.cv_results_["params"]) * CV
    threads = sorted({int(spread.cv_results_[f"split{i}_test_nncore_threads"][j])
                      for i in range(CV) for j in range(fits // CV)})
    same = all(np.array_equal(a, b) for a, b in
               zip(scores(serial).values(), scores(spread).values()))
    print(f"{fits} fits on {len(workers)} Dask workers, {n_threads} threads in all")
    print(f"nncore threads in each fit: {threads}")
    print(f"serial search {serial_s:.2f} s, Dask search {dask_s:.2f} s")
    print(f"workers' CPU per wall second: {cpu / dask_s:.2f} (their threads: {n_threads})")
    print(f"best: {spread.best_params_}, mean accuracy {spread.best_score_:.4f}")
    print(f"same cv_results_ scores as the serial search: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
