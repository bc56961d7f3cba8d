"""Run under mpiexec by tests/test_distributed.py (not collected by pytest): the mpi backend's collectives
against analytic results, the rest of the Group interface (start, broadcast_object, local_rank and
local_size, close), and gradients and SGD steps of data-parallel ranks against one process on the
whole batch.  Every rank checks; the first failure prints its traceback and aborts the job (non-zero exit).
Each rank prints "rank R ok" at the end.  ``--device cuda`` (with tests/fake_cupy on PYTHONPATH) puts the
vectors and the models on the fake device, so the host staging of CuPy vectors is what is tested."""
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: test_group's objects
import skengine as sk  # noqa: E402
import skengine.functional as F  # noqa: E402
import skengine.nn as nn  # noqa: E402
from skengine.autograd import Tensor  # noqa: E402
from skengine.backend import array_module, device_of, to_numpy  # noqa: E402
from skengine.distributed import MPIGroup, average_gradients, broadcast_parameters  # noqa: E402
from skengine.optim import SGD  # noqa: E402
from test_group import payload, same  # noqa: E402  (the objects broadcast_object sends, and bit-exact equality)

DEVICE = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"


def gather(group, vec):
    """Every rank's ``vec`` on every rank, as rows (each rank fills its slot, the others add zeros)."""
    slots = np.zeros((group.world_size, len(vec)))
    slots[group.rank] = to_numpy(vec)
    return to_numpy(group.all_reduce(slots.ravel())).reshape(group.world_size, -1)


def check_collectives(g):
    xp, world = array_module(DEVICE), g.world_size
    for step in range(20):  # rounds back to back
        mine = np.arange(7) * (g.rank + 1) + step * 1000.0
        total = g.all_reduce(xp.asarray(mine))
        assert device_of(total) == DEVICE, type(total)  # a device vector comes back on the device
        expected = sum(np.arange(7) * (r + 1) + step * 1000.0 for r in range(world))  # integers: exact
        assert np.array_equal(to_numpy(total), expected), (to_numpy(total), expected)
    # values spread over 16 decades, whose sum rounds differently in different orders: the same bits anyway
    rng = np.random.default_rng(g.rank)
    total = to_numpy(g.all_reduce(rng.standard_normal(10_000) * 10.0 ** rng.integers(-8, 8, 10_000)))
    every = gather(g, total)
    assert (every == total).all(), "ranks got different bits from all_reduce"
    parts = [np.random.default_rng(r) for r in range(world)]
    assert np.allclose(total, sum(p.standard_normal(10_000) * 10.0 ** p.integers(-8, 8, 10_000) for p in parts),
                       rtol=1e-12, atol=0)
    big = g.all_reduce(np.full(1 << 20, g.rank + 1.0))  # 8 MB: MPI's large-message path
    assert (big == world * (world + 1) / 2).all()
    for root in (0, world - 1):  # broadcast: the root's bits, NaN and -0.0 included
        vec = np.random.default_rng(100 + g.rank).standard_normal(1000)
        vec[:2] = np.nan, -0.0
        out = to_numpy(g.broadcast(xp.asarray(vec), root))
        want = np.random.default_rng(100 + root).standard_normal(1000)
        want[:2] = np.nan, -0.0
        assert out.tobytes() == want.tobytes(), f"broadcast from {root} is not the root's vector"
    t0 = time.perf_counter()  # barrier: nobody leaves before the last rank arrives 0.5 s late
    if g.rank == world - 1:
        time.sleep(0.5)
    g.barrier()
    assert time.perf_counter() - t0 > 0.45


def check_interface(g, started):
    """start returned the group without running its function (the launcher started the ranks); mpiexec here
    puts every rank on this host, so local_rank and local_size are rank and world_size; broadcast_object
    gives every rank the root's object, from two roots."""
    assert started is g, "start did not return the group"
    assert (g.local_rank, g.local_size) == (g.rank, g.world_size), (g.local_rank, g.local_size)
    for root in (0, g.world_size - 1):
        got = g.broadcast_object(payload(g.rank) if g.rank == root else None, root)
        assert same(got, payload(root)), f"broadcast_object from {root} is not the root's object"


def tiny_net(seed, bn=True):
    rng = np.random.default_rng(seed)
    layers = [nn.Linear(5, 4)] + ([nn.BatchNorm1d(4)] if bn else []) + [nn.ReLU(), nn.Linear(4, 3)]
    net = nn.Sequential(*layers)
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    return net.to(DEVICE)


def shard(g, n):
    """Uneven shards of ``n`` samples: rank r gets [cuts[r], cuts[r + 1])."""
    cuts = [0, 3, 5, 8][:g.world_size] + [n]
    return slice(cuts[g.rank], cuts[g.rank + 1])


def check_gradients(g):
    """Each rank's mean gradient over its shard, averaged weighted by the shard sizes, equals the gradient of
    the mean over the whole batch (BatchNorm in eval mode, so shards normalise as the whole batch does)."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 5)).astype(np.float32), rng.integers(0, 3, 10)
    xd, yd = sk.to_device(x, DEVICE), sk.to_device(y, DEVICE)
    whole = tiny_net(0).eval()
    F.cross_entropy(whole(Tensor(xd)), yd).backward()
    net = tiny_net(0).eval()
    mine = shard(g, 10)
    F.cross_entropy(net(Tensor(xd[mine])), yd[mine]).backward()
    n, (extra,) = average_gradients(g, list(net.parameters()), [], mine.stop - mine.start, (g.rank + 1.0,))
    assert (n, extra) == (10, g.world_size * (g.world_size + 1) / 2), (n, extra)
    for p, w in zip(net.parameters(), whole.parameters()):
        assert device_of(p.grad.data) == DEVICE
        np.testing.assert_allclose(to_numpy(p.grad.data), to_numpy(w.grad.data), rtol=1e-5, atol=1e-6)
        assert (gather(g, to_numpy(p.grad.data).ravel()) == to_numpy(p.grad.data).ravel()).all()


def check_training(g):
    """Five SGD steps (momentum, weight decay) of a net without BatchNorm: the ranks, each starting from its
    own random weights and then given rank 0's (broadcast_parameters), on their shards of each batch, end
    with the weights of one process trained on the whole batches, to float32 rounding."""
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((12, 5)).astype(np.float32), rng.integers(0, 3, 12)) for _ in range(5)]
    whole, net = tiny_net(0, bn=False), tiny_net(g.rank, bn=False)  # rank 0's own replica is the reference's
    broadcast_parameters(g, list(net.parameters()))
    for a, b in zip(net.parameters(), whole.parameters()):
        assert np.array_equal(to_numpy(a.data), to_numpy(b.data)), "broadcast_parameters gave other weights"
    for model, part in ((whole, slice(None)), (net, shard(g, 12))):
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        for x, y in batches:
            opt.zero_grad()
            xd, yd = sk.to_device(x[part], DEVICE), sk.to_device(y[part], DEVICE)
            F.cross_entropy(model(Tensor(xd)), yd).backward()
            if model is net:
                average_gradients(g, list(net.parameters()), [], len(y[part]))
            opt.step()
    for a, b in zip(net.parameters(), whole.parameters()):
        np.testing.assert_allclose(to_numpy(a.data), to_numpy(b.data), rtol=1e-5, atol=1e-6)


def main():
    g = MPIGroup()
    called = []
    check_interface(g, g.start(called.append))
    assert called == [], "MPIGroup.start ran its function"
    check_collectives(g)
    check_gradients(g)
    check_training(g)
    assert g.close(abort=False) is None  # every rank goes on to exit by itself
    os.write(1, f"rank {g.rank} ok\n".encode())  # one write: mpiexec interleaves the ranks


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        from mpi4py import MPI
        MPI.COMM_WORLD.Abort(1)
