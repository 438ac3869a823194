"""Thread counts: the default follows the OpenMP runtime (OMP_NUM_THREADS,
threadpoolctl's threadpool_limits), nncore's own settings win over it, and
nncore never changes the runtime's setting.

threadpoolctl is an optional test dependency (the `test` extra): without it
the threadpoolctl tests are skipped.
"""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import nncore
from nncore import MLP
from nncore._openmp import omp_max_threads

needs_openmp = pytest.mark.skipif(not nncore.openmp_enabled(),
                                  reason="a build without OpenMP always runs one thread")


def run_python(code, timeout=60, **env):
    """Run code in a fresh interpreter (env added to ours, OMP_NUM_THREADS dropped
    unless given); returns its stdout's last line parsed as JSON."""
    full = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def default_count():
    """Each test starts and ends with no process setting."""
    nncore.set_num_threads(None)
    yield
    nncore.set_num_threads(None)


# ---- the default and OMP_NUM_THREADS -----------------------------------------------------

def test_default_is_the_runtime_count_read_on_each_call():
    assert nncore.get_num_threads() == omp_max_threads() >= 1
    assert nncore.config()["num_threads"] == omp_max_threads()


@needs_openmp
def test_omp_num_threads_sets_the_default_and_set_num_threads_wins():
    out = run_python(
        "import json, nncore\n"
        "a = nncore.get_num_threads()\n"
        "nncore.set_num_threads(1)\n"
        "b = nncore.get_num_threads()\n"
        "with nncore.threads(2):\n"
        "    c = nncore.get_num_threads()\n"
        "nncore.set_num_threads(None)\n"
        "print(json.dumps([a, b, c, nncore.get_num_threads()]))\n",
        OMP_NUM_THREADS="3")
    assert out == [3, 1, 2, 3]


@needs_openmp
def test_nncore_never_changes_the_runtime_setting():
    before = omp_max_threads()
    X = np.random.default_rng(0).standard_normal((64, 8))
    y = np.arange(64) % 3
    for n in (1, 3):
        nncore.set_num_threads(n)
        with nncore.threads(n):
            MLP([8, 16, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=1)
    assert omp_max_threads() == before


# ---- threadpoolctl ------------------------------------------------------------------------

@needs_openmp
def test_threadpool_limits_sets_the_default():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        assert nncore.get_num_threads() == 1
        assert nncore.config()["num_threads"] == 1
        with threadpoolctl.threadpool_limits(3, user_api="openmp"):
            assert nncore.get_num_threads() == 3
        assert nncore.get_num_threads() == 1
    assert nncore.get_num_threads() == omp_max_threads()


@needs_openmp
def test_set_num_threads_and_threads_win_over_threadpool_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        with nncore.threads(2):
            assert nncore.get_num_threads() == 2
        nncore.set_num_threads(2)
        assert nncore.get_num_threads() == 2
        nncore.set_num_threads(None)
        assert nncore.get_num_threads() == 1


@needs_openmp
def test_threadpool_limits_belongs_to_the_thread_that_set_it():
    """omp_set_num_threads sets the calling thread's count (OpenMP's nthreads-var is
    per data environment): another thread keeps the runtime default, as it does for
    scikit-learn, which reads omp_get_max_threads the same way."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    outside = nncore.get_num_threads()
    seen = []
    with threadpoolctl.threadpool_limits(1):
        worker = threading.Thread(target=lambda: seen.append(nncore.get_num_threads()))
        worker.start()
        worker.join()
        assert nncore.get_num_threads() == 1
    assert seen == [outside]


@needs_openmp
def test_threadpoolctl_lists_the_openmp_library_nncore_loads():
    pytest.importorskip("threadpoolctl")
    out = run_python(
        "import json, threadpoolctl\n"
        "before = {i['filepath'] for i in threadpoolctl.threadpool_info()\n"
        "          if i['user_api'] == 'openmp'}\n"
        "import nncore\n"
        "after = [i for i in threadpoolctl.threadpool_info() if i['user_api'] == 'openmp'\n"
        "         and i['filepath'] not in before]\n"
        "print(json.dumps([[i['filepath'], i['num_threads']] for i in after]))\n",
        OMP_NUM_THREADS="3")
    assert len(out) == 1, out
    path, count = out[0]
    assert os.path.basename(path).startswith(("libgomp", "libomp", "libiomp")) and count == 3
