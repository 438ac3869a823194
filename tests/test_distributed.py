"""nncore.distributed.fit under mpiexec -n 1, 2 and 4: the same weights and History
(sha256 of every weight) as one-process fit(..., grad_shards=4), and every rank ends
within the timeout when one fails. Each mpiexec start costs about a second, so one
launch runs every case. Needs mpi4py and an MPI launcher (the extra nncore-mlp[mpi]);
skipped, saying so, when they are absent."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import nncore as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_fit  # noqa: E402

try:
    import mpi4py  # noqa: F401
except ImportError:
    mpi4py = None
MPIEXEC = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
           or shutil.which("mpiexec"))
pytestmark = pytest.mark.skipif(mpi4py is None or MPIEXEC is None,
                                reason="needs mpi4py and mpiexec: pip install 'nncore-mlp[mpi]'")
TIMEOUT = 120


def launch(P, *args, timeout=TIMEOUT, launcher=()):
    cmd = [MPIEXEC, *launcher, "-n", str(P), sys.executable, "-m", "mpi4py",
           os.path.join(HERE, "mpi_fit.py"), *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"mpiexec -n {P} {' '.join(args)} ran past {timeout} s:\n{out}")
    return p.returncode, out


def results(out):
    return {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines()
            if line.split() and line.split()[0] in mpi_fit.CASES}


def reference(name, epochs=None):
    m, X, y, w, kw = mpi_fit.case(name)
    if epochs:
        kw["epochs"] = epochs
    try:
        result = repr(m.fit(X, y, sample_weight=w, grad_shards=mpi_fit.G, **kw).history)
    except nn.TrainingDiverged as e:
        result = f"TrainingDiverged: {e}"
    return f"{mpi_fit.digest(m)} {result}", mpi_fit.digest(m)


def test_same_bits_for_1_2_4_processes_and_one_process_fit():
    """tiny (float64, SGD momentum), w1 (W1's shape, Adam, l2, sample weights, a partial
    last batch), sparse (a rank without rows, one whose weights are all 0) and diverge
    (TrainingDiverged on every rank, the same last weights); the
    sums through the shared-memory window (the default on one host) and as messages."""
    want = {name: reference(name)[0] for name in mpi_fit.CASES}
    assert "TrainingDiverged" in want["diverge"] and "TrainingDiverged" not in want["w1"]
    for P, args in ((1, ["2"]), (2, []), (2, ["-", "messages"]), (4, ["1", "shared"]),
                    (4, ["1", "messages"])):
        rc, out = launch(P, "fit", *args)
        assert rc == 0, out
        assert results(out) == want, (P, args, out)


def test_checkpoint_from_rank_0_resumes_under_another_process_count(tmp_path):
    path = str(tmp_path / "half.npz")
    rc, out = launch(2, "save", path)
    assert rc == 0, out
    rc, out = launch(4, "resume", path)
    assert rc == 0, out
    assert results(out)["w1"] == reference("w1")[1]


@pytest.mark.parametrize("how", ["raise", "hang"])
def test_a_failing_rank_stops_every_rank_naming_it(how, tmp_path):
    path = str(tmp_path / "error")
    t0 = time.monotonic()
    rc, out = launch(2, how, path, timeout=60)
    assert rc != 0
    assert time.monotonic() - t0 < 30, out
    with open(path + ".0") as f:
        error = f.read()
    assert error.startswith("RankFailed") and "rank 1" in error, (error, out)
    if how == "raise":
        assert "rank 1 raised an exception" in error


@pytest.mark.parametrize("cleanup", [True, False], ids=["launcher-cleanup", "no-cleanup"])
def test_a_killed_rank_ends_the_job_naming_it(cleanup, tmp_path):
    """SIGKILL on rank 1 in epoch 2. By default MPICH's launcher (Hydra) kills every
    process of the job at once, with SIGKILL: nothing of nncore survives to speak, and
    what names the failure is Hydra's "BAD TERMINATION ... PID <pid> ... EXIT CODE: 9"
    with the killed process's pid. With -disable-auto-cleanup, rank 0 usually outlives
    it (Hydra sometimes still ends the job first) and raises RankFailed naming rank 1 as
    soon as it sees the process gone (its pid, on this host), not at the deadline. A
    hung rank, which no launcher sees, is the test above."""
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    hydra = "HYDRA" in version.upper()
    if not cleanup and not hydra:
        pytest.skip("-disable-auto-cleanup is an option of MPICH's launcher (Hydra)")
    path = str(tmp_path / "error")
    t0 = time.monotonic()
    rc, out = launch(2, "kill", path, timeout=60,
                     launcher=[] if cleanup else ["-disable-auto-cleanup"])
    assert rc != 0, out
    assert time.monotonic() - t0 < 30, out
    with open(path + ".pid.1") as f:
        pid = f.read()
    if cleanup and hydra:
        assert f"PID {pid} " in out and "EXIT CODE: 9" in out, out
    if os.path.exists(path + ".0"):
        with open(path + ".0") as f:
            error = f.read()
        # (or, were MPI to see it first, "rank 1 failed (MPI error ...")
        assert error.startswith((f"RankFailed: nncore.distributed.fit: rank 1 died (pid {pid} "
                                 f"on this host", "RankFailed: nncore.distributed.fit: rank 1 "
                                 "failed (MPI error")), (error, out)


def test_import_nncore_does_not_import_mpi4py():
    code = "import sys, nncore, nncore.distributed; sys.exit('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bad_arguments_name_them():
    from nncore import distributed
    m, X, y, w, kw = mpi_fit.case("tiny")
    with pytest.raises(ValueError, match="timeout"):
        distributed.fit(m, X, y, timeout=0, **kw)
    with pytest.raises(ValueError, match="grad_shards"):
        distributed.fit(m, X, y, grad_shards=0, **kw)
    with pytest.raises(TypeError, match="comm"):
        distributed.fit(m, X, y, comm="world", **kw)
    with pytest.raises(ValueError, match="all zero"):
        distributed.fit(m, X, y, sample_weight=np.zeros(len(X)), **kw)
    with pytest.raises(TypeError, match="shared_memory"):
        distributed.fit(m, X, y, shared_memory="yes", **kw)
    assert nn.distributed.shard_rows(10, 4) == slice(0, 10)
