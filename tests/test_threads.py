"""Thread counts: the default follows the OpenMP runtime (OMP_NUM_THREADS,
threadpoolctl's threadpool_limits), nncore's own settings win over it, nncore
never changes the runtime's setting, and a forked child of a process that ran
parallel kernels trains on one thread instead of hanging in libgomp.

threadpoolctl is an optional test dependency (the `test` extra): without it
the threadpoolctl tests are skipped; the fork tests run either way. Every
child process runs under a timeout and is killed when it runs past it.
"""
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import nncore
from nncore import MLP, functional as F
from nncore._kernels import finite as _finite
from nncore._kernels.openmp import omp_max_threads

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


# ---- fork after a parallel step -----------------------------------------------------------

def _train_in_child(conn, seed):
    """A forked child's work: report the thread counts it gets, then train."""
    try:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((512, 784)).astype(np.float32)
        y = rng.integers(0, 10, 512)
        with nncore.threads(2):
            asked = nncore.get_num_threads()
            model = MLP([784, 256, 10], seed=seed)
            history = model.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=256)
            a = rng.standard_normal((300, 300))
            c = F.gemm(a, a, n_threads=2)
        conn.send({"config": nncore.config(), "asked": asked,
                   "explicit": nncore._threads.resolve_num_threads(2),
                   "loss": float(history.history["loss"][-1]),
                   "gemm_ok": bool(np.allclose(c, a @ a))})
    except BaseException as e:                      # noqa: BLE001 - reported to the parent
        conn.send({"error": repr(e)})
    finally:
        conn.close()


def _run_forked(target, n_children=2, timeout=60):
    """Start n_children with the fork start method; returns their reports. A child
    still running after timeout seconds is killed and the test fails."""
    ctx = multiprocessing.get_context("fork")
    jobs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # fork of a threaded process
        for seed in range(n_children):
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=target, args=(child_end, seed), daemon=True)
            proc.start()
            child_end.close()
            jobs.append((proc, parent_end))
    reports, hung = [], []
    deadline = time.monotonic() + timeout
    for proc, conn in jobs:
        ready = conn.poll(max(0.0, deadline - time.monotonic()))
        if ready:
            reports.append(conn.recv())
        proc.join(5 if ready else 0)
        if proc.is_alive():
            proc.kill()
            proc.join()
            hung.append(proc.pid)
    assert not hung, f"forked children {hung} hung (killed after {timeout} s)"
    for proc, _ in jobs:
        assert proc.exitcode == 0, f"child exit code {proc.exitcode}"
    return reports


@needs_openmp
def test_forked_children_train_after_a_two_thread_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 784)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    with nncore.threads(2):            # 784-256-10 at batch 256: parallel regions run
        MLP([784, 256, 10], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=1,
                                        batch_size=256)
    reports = _run_forked(_train_in_child)
    assert len(reports) == 2
    for r in reports:
        assert "error" not in r, r
        assert r["config"]["forked_child_serial"] is True
        assert r["config"]["num_threads"] == 1 and r["asked"] == 1 and r["explicit"] == 1
        assert np.isfinite(r["loss"]) and r["gemm_ok"]
    assert nncore.config()["forked_child_serial"] is False       # the parent keeps threads
    with nncore.threads(2):
        assert nncore.get_num_threads() == 2


@needs_openmp
def test_forked_child_keeps_threads_when_the_parent_never_ran_parallel():
    """libgomp's pool does not exist before a parallel region: a child forked from a
    process that never gave a kernel two threads may start one, and does."""
    out = run_python(
        "import json, os, numpy as np, nncore\n"
        "from nncore import MLP\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((512, 784)).astype(np.float32)\n"
        "y = rng.integers(0, 10, 512)\n"
        "with nncore.threads(1):\n"
        "    MLP([784, 256, 10], seed=0).fit(X, y, loss='softmax_cross_entropy',\n"
        "                                    batch_size=256)\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import signal; signal.alarm(50)\n"
        "    with nncore.threads(2):\n"
        "        n = nncore.get_num_threads()\n"
        "        MLP([784, 256, 10], seed=0).fit(X, y, loss='softmax_cross_entropy',\n"
        "                                        batch_size=256)\n"
        "    os.write(w, json.dumps([nncore.config()['forked_child_serial'], n]).encode())\n"
        "    os._exit(0)\n"
        "os.close(w)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.read(r, 1000).decode())\n",
        timeout=60)
    assert out == [False, 2]


# ---- the tuner: fit's thread count on a busy machine -------------------------------------

from nncore._threads import Tuner  # noqa: E402


def drive(tuner, rate, calls):
    """`calls` calls of CHECK_SECONDS = 0.05 at rate(count, i) batches/s; the counts used."""
    used = []
    for i in range(calls):
        count, seconds = tuner.next(0.05)
        assert seconds <= 0.05
        used.append(count)
        tuner.record(count, max(1, round(rate(count, i) * seconds)), seconds)
    return used


def test_tuner_runs_the_faster_count():
    busy = drive(Tuner(4, True), lambda c, i: 2000 if c == 1 else 500, 200)
    idle = drive(Tuner(4, True), lambda c, i: 2000 if c == 1 else 3000, 200)
    assert busy[:2] == [4, 1]                     # a probe of each count first
    assert busy[2:].count(1) >= 0.95 * 198
    assert idle[2:].count(4) >= 0.95 * 198


def test_tuner_probes_again_and_follows_a_change_of_load():
    # idle for 100 calls, then another process takes the cores
    used = drive(Tuner(2, True), lambda c, i: (3000 if c == 2 else 2000) if i < 100
                 else (400 if c == 2 else 1900), 300)
    assert used[80:100].count(2) >= 18
    first_one = next(i for i in range(100, 300) if used[i] == 1)
    assert first_one <= 100 + Tuner.PROBE_EVERY_MAX + 1
    assert used[first_one + 3:].count(1) >= 0.9 * len(used[first_one + 3:])


def test_tuner_probes_are_short():
    tuner = Tuner(2, True)
    assert tuner.next(0.05) == (2, Tuner.PROBE_SECONDS)
    tuner.record(2, 10, 0.005)
    assert tuner.next(0.05) == (1, Tuner.PROBE_SECONDS)
    tuner.record(1, 10, 0.005)
    assert tuner.next(0.05) == (1, 0.05) or tuner.next(0.05)[1] == 0.05


def test_tuner_keeps_a_count_the_user_set():
    assert drive(Tuner(2, False), lambda c, i: 2000 if c == 1 else 10, 50) == [2] * 50
    assert drive(Tuner(1, True), lambda c, i: 100, 5) == [1] * 5
    default = nncore.get_num_threads()
    assert Tuner.for_fit().counts == ((default, 1) if default > 1 else (default,))
    assert Tuner.for_fit(parallel=False).counts == (default,)   # one-thread steps
    with nncore.threads(2):
        assert Tuner.for_fit().counts == (2,)
    nncore.set_num_threads(2)
    assert Tuner.for_fit().counts == (2,)


def test_fit_checks_X_on_the_threads_its_steps_use(monkeypatch):
    """A fit whose steps run on one thread (below 2 x FLOPS_PER_THREAD a step) checks X
    on one thread too: a parallel region there would leave libgomp's idle threads
    spinning beside the one-thread steps, which on a busy machine made the default
    count slower than 1 thread (W2: 0.6x). A step that threads checks X on its count.
    (X of 2^20 elements: the check's own threshold for threads; a callback keeps the
    check before training, not deferred into the first epoch.)"""
    from nncore import functional as F
    seen = []
    real = F.all_finite

    def recording(x, *, backend="compiled", n_threads=None):
        seen.append(n_threads)
        return real(x, backend=backend, n_threads=n_threads)

    monkeypatch.setattr(F, "all_finite", recording)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1338, 784)).astype(np.float32)
    assert X.size >= _finite.PARALLEL_MIN
    y = rng.integers(0, 10, len(X))
    kw = dict(loss="softmax_cross_entropy", epochs=1, shuffle=False,
              callbacks=[nncore.callbacks.Callback()])
    with nncore.threads(2):
        MLP([784, 16, 16, 10], "sigmoid", seed=0).fit(X, y, batch_size=32, **kw)  # 1.7 MFLOP
        assert seen[0] == 1
        seen.clear()
        MLP([784, 128, 64, 10], seed=0).fit(X, y, batch_size=128, **kw)          # 54 MFLOP
        assert seen[0] == 2
