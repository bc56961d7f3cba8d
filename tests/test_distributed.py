"""Data parallelism (skengine.distributed), both backends: over forked processes (local) the all-reduce sums
exactly and identically on every rank, broadcast copies the root's bits, averaged gradients equal the whole
batch's gradient, a rank that dies is reported instead of hanging, and the loader's and evaluator's shards
add up to the whole; under mpiexec (the mpi backend, tests/mpi/collectives.py) the same collectives and
gradients, and a few SGD steps on shards equal one process on the whole batch."""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skengine.functional as F
import skengine.nn as nn
from skengine.autograd import Tensor
from skengine.data import DataLoader
from skengine.distributed import (
    Group,
    MPIGroup,
    ProcessGroup,
    WorkerError,
    average_gradients,
    float_buffers,
    launched_rank,
    launched_size,
    mpi_requested,
    vector_size,
)
from skengine.distributed.mpi import RANK_VARS, SIZE_VARS
from skengine.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("deadline")  # a hung group fails its test, not the suite


def gather(group, vec):
    """Every rank's ``vec`` on every rank, as rows: each rank fills its own slot, the others are zero."""
    slots = np.zeros((group.world_size, len(vec)))
    slots[group.rank] = vec
    return group.all_reduce(slots.ravel()).reshape(group.world_size, -1)


def run_group(world, numel, fn):
    """Run ``fn(group)`` on every rank of a new group; return rank 0's result."""
    group = ProcessGroup(world, numel)
    try:
        group.start(fn)
        return fn(group)
    finally:
        group.close()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_all_reduce_sums_every_rank_and_all_ranks_get_the_same_bits(world):
    def fn(group):
        wrong = 0.0
        for step in range(50):  # many rounds back to back: a race would mix up rounds
            mine = np.arange(7) * (group.rank + 1) + step * 1000.0 + 0.1 * group.rank
            total = group.all_reduce(mine)
            expected = sum(np.arange(7) * (r + 1) + step * 1000.0 + 0.1 * r for r in range(world))
            wrong += float(np.abs(total - expected).max() > 1e-9)
            wrong += float(not (gather(group, total) == total).all())  # every rank got the same bits
        return group.all_reduce([wrong])[0]  # the workers' own checks count too

    assert run_group(world, 7 * world, fn) == 0


def test_all_reduce_refuses_a_longer_vector_than_the_group_holds():
    with pytest.raises(ValueError, match="vector of 5 values, the group was made for 4"):
        ProcessGroup(1, 4).all_reduce(np.zeros(5))


@pytest.mark.parametrize("world", [0, 1.5, "2"])
def test_bad_world_size_is_named(world):
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        ProcessGroup(world, 4)


def tiny_net():
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    return net


def test_averaged_gradients_are_the_whole_batchs_gradient_on_every_rank():
    """Uneven shards (3 and 7 samples): each rank's mean gradient weighted by its count, summed, is the
    gradient of the mean over all 10.  BatchNorm is in eval mode here, so shards see the same
    normalisation as the whole batch and the equality is exact up to rounding."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 5)).astype(np.float32), rng.integers(0, 3, 10)
    net = tiny_net().eval()
    F.cross_entropy(net(Tensor(x)), y).backward()
    whole = [p.grad.data.copy() for p in net.parameters()]
    bounds = [(0, 3), (3, 10)]

    def fn(group):
        for p in net.parameters():
            p.grad = None
        lo, hi = bounds[group.rank]
        F.cross_entropy(net(Tensor(x[lo:hi])), y[lo:hi]).backward()
        n, (extra,) = average_gradients(group, list(net.parameters()), [], hi - lo, (group.rank + 1.0,))
        every = gather(group, np.concatenate([p.grad.data.ravel() for p in net.parameters()]))
        return n, extra, np.array_equal(every[0], every[1]), [p.grad.data for p in net.parameters()]

    n, extra, same, grads = run_group(2, 2 * vector_size(net, 1), fn)
    assert (n, extra, same) == (10, 3.0, True)
    for g, w in zip(grads, whole):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_batchnorm_running_statistics_are_averaged_over_ranks():
    net = tiny_net()
    buffers = float_buffers(net)
    assert [b.data.shape for b in buffers] == [(4,), (4,)]  # running mean and var; not the int counter

    def fn(group):
        for b in buffers:
            b.data[...] = group.rank * 2.0 + np.arange(4)
        average_gradients(group, [], buffers, 1)
        return [b.data.copy() for b in buffers]

    for b in run_group(2, vector_size(net, 0), fn):
        np.testing.assert_array_equal(b, 1.0 + np.arange(4))


def test_averaging_the_buffers_bumps_their_versions():
    """The all-reduce writes the running statistics in place: a retained graph that kept one refuses a
    second backward (as after any in-place write) instead of silently using the averaged values."""
    net = tiny_net()
    running_var = float_buffers(net)[1]
    w = Tensor(np.ones(4), requires_grad=True)
    y = (w * running_var).sum()  # Mul keeps the buffer's array for w's gradient
    y.backward(retain_graph=True)
    average_gradients(ProcessGroup(1, vector_size(net, 0)), [], float_buffers(net), 1)
    with pytest.raises(RuntimeError, match="Mul.backward: an input it saved .* was changed in place"):
        y.backward()


@pytest.mark.parametrize("how", ["raises", "exits"])
def test_a_worker_that_fails_is_reported_not_waited_for(how, capfd):
    def fn(group):
        if group.rank == 1:
            if how == "raises":
                raise RuntimeError("worker boom")
            os._exit(3)
        group.all_reduce(np.ones(2))

    with pytest.raises(WorkerError, match="worker rank 1 of the process group has exited"):
        run_group(2, 2, fn)
    if how == "raises":
        assert "worker boom" in capfd.readouterr().err  # the worker's own traceback is shown


def test_ctrl_c_is_rank_0s_to_handle_workers_ignore_it():
    def fn(group):
        if group.rank == 1:
            os.kill(os.getpid(), signal.SIGINT)  # without SIG_IGN: KeyboardInterrupt, and the worker is gone
        return group.all_reduce([1.0])[0]

    assert run_group(2, 1, fn) == 2.0


def test_workers_stop_when_rank_0_goes_away():
    """Rank 0 leaves without reducing: the worker's wait ends with an error, and close() reaps it."""
    group = ProcessGroup(2, 2)

    def fn(g):
        g.all_reduce(np.ones(2))

    group.start(fn)
    worker = group.workers[0]
    group.close(timeout=20)
    assert not worker.is_alive() and worker.exitcode == 1


@given(batch=st.integers(1, 40), n=st.integers(1, 90), replicas=st.integers(1, 4), cut=st.sampled_from([0, 8]))
def test_loader_shards_put_together_are_the_whole_batch(batch, n, replicas, cut):
    rng = np.random.default_rng(n)
    images, labels = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), rng.integers(0, 10, n)

    def loader(rank=0, world=1):
        return DataLoader(images, labels, batch, shuffle=True, augment=True, seed=5, cutout=cut,
                          num_replicas=world, rank=rank)

    whole = list(loader())
    shards = [list(loader(r, replicas)) for r in range(replicas)]
    for b, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shards]), x)
        np.testing.assert_array_equal(np.concatenate([s[b][1] for s in shards]), y)


def test_loader_rank_must_be_in_range():
    with pytest.raises(ValueError, match=r"rank must be in \[0, num_replicas=2\), got 2"):
        DataLoader(np.zeros((4, 3, 8, 8), np.uint8), np.zeros(4), 2, num_replicas=2, rank=2)


@pytest.mark.parametrize("n", [23, 2])
def test_sharded_evaluation_equals_the_whole_evaluation(n):
    """Batches of 10 over 3 ranks: 23 images give rank 0 one image of the last batch; 2 give it none at all."""
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), rng.integers(0, 3, n)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    whole = evaluate(net, DataLoader(images, labels, 10), tta=True)

    def fn(group):
        return evaluate(net, DataLoader(images, labels, 10, num_replicas=3, rank=group.rank), tta=True,
                        all_reduce=group.all_reduce, num_classes=3)

    sharded = run_group(3, 3 + 9, fn)
    np.testing.assert_array_equal(sharded["confusion"], whole["confusion"])
    for k in ("loss", "acc", "plain_loss", "plain_acc"):
        assert sharded[k] == pytest.approx(whole[k], rel=1e-6), k


def test_a_stopped_worker_is_named_within_the_timeout_and_killed_on_abort():
    """A worker stopped with SIGSTOP made rank 0 wait for ever; now rank 0 names it after ``timeout`` s, and
    close(abort=True) kills it (SIGTERM stays pending on a stopped process) instead of waiting."""
    import time

    def fn(group):
        while True:
            group.all_reduce(np.ones(3))

    group = ProcessGroup(2, 3, timeout=1.0).start(fn)
    try:
        group.all_reduce(np.ones(3))
        os.kill(group.workers[0].pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(WorkerError, match="worker rank 1 of the process group sent nothing for 1 s"):
            for _ in range(3):
                group.all_reduce(np.ones(3))
        assert time.monotonic() - t0 < 10
    finally:
        proc, t0 = group.workers[0], time.monotonic()
        group.close(abort=True)
        assert time.monotonic() - t0 < 10 and not proc.is_alive()


def test_a_worker_whose_rank_0_hangs_gives_up_after_the_timeout():
    def fn(group):
        try:
            group.all_reduce(np.ones(2))
            group.all_reduce(np.ones(2))  # rank 0 never comes to this one
        except WorkerError as e:
            os._exit(3 if "rank 0 of the process group sent nothing for 1 s" in str(e) else 4)

    group = ProcessGroup(2, 2, timeout=1.0).start(fn)
    try:
        group.all_reduce(np.ones(2))
        group.workers[0].join(20)
        assert group.workers[0].exitcode == 3
    finally:
        group.close()


def test_a_rank_that_was_stopped_itself_does_not_blame_the_others():
    """Ctrl-Z stops a whole group; on continue, a rank's wait must not count the time it was stopped itself
    (it used wall time, so the run died on 'fg' although every rank was healthy)."""
    import time

    def fn(group):
        for _ in range(3):
            group.all_reduce(np.ones(2))

    group = ProcessGroup(2, 2, timeout=2.0).start(fn)
    try:
        group.all_reduce(np.ones(2))
        worker = group.workers[0]
        time.sleep(0.3)  # the worker now waits in its next all-reduce for rank 0
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(4.0)  # longer than the timeout, with the waiting worker stopped
        os.kill(worker.pid, signal.SIGCONT)
        np.testing.assert_array_equal(group.all_reduce(np.ones(2)), [2.0, 2.0])
        np.testing.assert_array_equal(group.all_reduce(np.ones(2)), [2.0, 2.0])
        worker.join(10)
        assert worker.exitcode == 0
    finally:
        group.close(abort=True)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_bad_timeout_is_named(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        ProcessGroup(1, 4, timeout=timeout)


# ---------------------------------------------------------------- the communicator interface, local backend

@pytest.mark.parametrize("root", [0, 2])
def test_local_broadcast_gives_every_rank_the_roots_bits(root):
    def fn(group):
        vec = np.random.default_rng(group.rank).standard_normal(6)
        vec[:2] = np.nan, -0.0  # a sum with zeros would turn -0.0 into 0.0: the broadcast copies
        got = group.broadcast(vec, root)
        want = np.random.default_rng(root).standard_normal(6)
        want[:2] = np.nan, -0.0
        return group.all_reduce([got.tobytes() != want.tobytes()])[0]

    assert run_group(3, 6, fn) == 0


def test_local_broadcast_root_must_be_a_rank():
    with pytest.raises(ValueError, match=r"root must be in \[0, world_size=1\), got 1"):
        ProcessGroup(1, 2).broadcast(np.zeros(2), root=1)


def test_local_barrier_waits_for_the_last_rank():
    import time

    def fn(group):
        t0 = time.perf_counter()
        if group.rank == 1:
            time.sleep(0.5)
        group.barrier()
        return time.perf_counter() - t0

    assert run_group(2, 1, fn) > 0.45


def test_local_abort_kills_the_workers_at_once():
    import time

    def fn(group):
        while True:
            group.all_reduce(np.ones(2))

    group = ProcessGroup(2, 2).start(fn)
    group.all_reduce(np.ones(2))
    proc, t0 = group.workers[0], time.monotonic()
    group.abort()
    assert not proc.is_alive() and time.monotonic() - t0 < 10 and group.workers == []


@pytest.mark.gpu
def test_device_vectors_are_staged_through_the_host_and_come_back_on_the_device():
    """A CuPy vector through the local group, and average_gradients on a model on the device: the results
    are device arrays with the host's numbers (one rank: forking a CUDA process is not allowed)."""
    from skengine.backend import device_of, to_numpy
    x = Tensor(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)).to("cuda")
    net = tiny_net().eval()
    F.cross_entropy(net(Tensor(x.data.get())), np.array([0, 1, 2, 0])).backward()
    host = [p.grad.data.copy() for p in net.parameters()]
    net.zero_grad()
    net.to("cuda")
    F.cross_entropy(net(x), Tensor(np.array([0, 1, 2, 0])).to("cuda").data).backward()
    group = ProcessGroup(1, vector_size(net, 0))
    total = group.all_reduce(net[0].weight.data.ravel())
    assert device_of(total) == "cuda" and np.array_equal(to_numpy(total), to_numpy(net[0].weight.data).ravel())
    assert average_gradients(group, list(net.parameters()), float_buffers(net), 4)[0] == 4
    for p, h in zip(net.parameters(), host):
        assert device_of(p.grad.data) == "cuda"
        np.testing.assert_allclose(to_numpy(p.grad.data), h, rtol=1e-5, atol=1e-6)


def test_both_backends_implement_the_interface():
    """(tests/test_group.py checks the members the trainer uses, and their signatures.)"""
    for cls in (ProcessGroup, MPIGroup):
        assert issubclass(cls, Group)
        for name in ("start", "all_reduce", "broadcast", "broadcast_object", "barrier", "abort", "close"):
            assert getattr(cls, name) is not getattr(Group, name) or name == "barrier", (cls, name)


def test_mpi_is_neither_imported_nor_asked_for_without_a_launcher(monkeypatch):
    """mpi4py initialises MPI on import: a plain run must not import it, and only a launcher of 2+ ranks (or
    backend "mpi") asks for it."""
    code = ("import sys, skengine, skengine.train, skengine.distributed\n"
            "from skengine.training import loop, config\n"
            "print('mpi4py' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in SIZE_VARS + RANK_VARS}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stdout + run.stderr
    for name in SIZE_VARS + RANK_VARS:
        monkeypatch.delenv(name, raising=False)
    assert (launched_size(), launched_rank(), mpi_requested("auto"), mpi_requested("mpi")) == (1, 0, False, True)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert (launched_size(), launched_rank(), mpi_requested("auto"), mpi_requested("local")) == (4, 3, True, False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert not mpi_requested("auto")


# ---------------------------------------------------------------- the mpi backend, under mpiexec

COLLECTIVES = os.path.join(os.path.dirname(__file__), "mpi", "collectives.py")
FAKE_CUPY = os.path.join(os.path.dirname(__file__), "fake_cupy")


@pytest.mark.parametrize("ranks,device", [(2, "cpu"), (3, "cpu"), (2, "cuda")])
def test_mpi_collectives_gradients_and_training_under_mpiexec(mpiexec, ranks, device):
    """tests/mpi/collectives.py on every rank: start returns the group and runs nothing, local_rank and
    local_size (one host: rank and world_size), broadcast_object from two roots, close(abort=False);
    all_reduce against analytic sums (integers: exact) with the same bits on every rank (also for values
    whose sum depends on the order), 8 MB vectors, broadcast from two roots bit for bit, barrier; the
    averaged gradients of uneven shards equal the whole batch's (rtol 1e-5, atol 1e-6: float32 rounding);
    five SGD steps on shards, after broadcast_parameters from differently initialised replicas, equal one
    process on the whole batches (same tolerance).  "cuda" runs on the fake
    device (tests/fake_cupy): device vectors come back on the device, staged through the host."""
    env = {"PYTHONPATH": FAKE_CUPY} if device == "cuda" else None
    run = mpiexec(ranks, [COLLECTIVES, "--device", device], timeout=120, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    # mpiexec interleaves the ranks' output: find each rank's word anywhere
    assert sorted(int(r) for r in re.findall(r"rank (\d+) ok", run.stdout)) == list(range(ranks)), out[-4000:]


def test_srun_tasks_are_recognised_and_an_mpi_launchers_own_variables_come_first(monkeypatch):
    """srun (any --mpi plugin, PMIx included, which puts only PMIX_RANK in the environment) sets
    SLURM_STEP_NUM_TASKS and SLURM_PROCID in a job step; mpiexec inside a Slurm job sets its own PMI_*."""
    for name in SIZE_VARS + RANK_VARS + ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMIX_RANK", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert (launched_size(), launched_rank(), mpi_requested("auto")) == (2, 1, True)
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "3")
    assert (launched_size(), launched_rank()) == (4, 3)


def test_sigterm_is_rank_0s_to_handle_workers_ignore_it():
    """Slurm's scancel (and its time limit) sends SIGTERM to every process of the step: rank 0 stops the run
    after the step (StopRequested); a worker killed by it would end the run without a checkpoint."""
    def fn(group):
        if group.rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return group.all_reduce([1.0])[0]

    assert run_group(2, 1, fn) == 2.0
