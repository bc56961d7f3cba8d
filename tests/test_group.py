"""The communicator interface (skengine.distributed.Group) that the trainer uses whole: every member the
trainer and gradients.py touch on a group (read from their source at test time) is declared on Group and
implemented, with Group's signature, by both backends; then the members beyond the collectives on the local
backend with forked ranks (broadcast_object in rounds through the shared buffer, local_rank and local_size,
start, close with abort).  Under mpiexec tests/mpi/collectives.py checks the same members of MPIGroup."""
import ast
import inspect
import pathlib
import pickle
import signal
import textwrap
import time

import numpy as np
import pytest

import skengine.distributed.mpi as mpi_module
from skengine.distributed import Group, MPIGroup, ProcessGroup, WorkerError
from skengine.parallel import get_num_threads, set_num_threads

pytestmark = pytest.mark.usefixtures("deadline")  # a hung group fails its test, not the suite

ROOT = pathlib.Path(__file__).resolve().parents[1]
GROUP_NAMES = ("group", "mpi")  # what the trainer calls a group


def trainer_sources():
    return sorted((ROOT / "skengine" / "training").rglob("*.py")) + [ROOT / "skengine" / "distributed" / "gradients.py"]


def is_group(node):
    """``group``, ``mpi``, or ``<anything>.group``."""
    return (isinstance(node, ast.Name) and node.id in GROUP_NAMES) or \
        (isinstance(node, ast.Attribute) and node.attr in GROUP_NAMES)


def group_uses():
    """{member: [(file:line, call node or None), ...]} for every attribute the trainer reads on a group."""
    uses = {}
    for path in trainer_sources():
        tree = ast.parse(path.read_text(), str(path))
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_group(node.value):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                uses.setdefault(node.attr, []).append((where, calls.get(id(node))))
    return uses


def declared_attributes():
    return set(Group.__annotations__)


def declared_methods():
    return {name for name, f in vars(Group).items() if callable(f) and not name.startswith("_")}


def raises_not_implemented(func):
    """Whether ``func``'s own body raises NotImplementedError (an interface stub)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


class FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind):
        return FakeComm(0, 2)  # this rank is the first of 2 on its host

    def Free(self):
        pass


class FakeMPI:
    COMM_TYPE_SHARED = 1
    COMM_WORLD = FakeComm(1, 3)


@pytest.fixture
def mpi_group(monkeypatch):
    """An MPIGroup on a stand-in for mpi4py's MPI: rank 1 of 3, rank 0 of the 2 on its host."""
    monkeypatch.setattr(mpi_module, "_mpi", lambda: FakeMPI)
    return MPIGroup()


def test_the_trainer_uses_only_the_interface_and_both_backends_implement_it_with_its_signatures(mpi_group):
    uses = group_uses()
    assert "all_reduce" in uses, f"no group.all_reduce found in {[str(p) for p in trainer_sources()]}"
    attributes, methods = declared_attributes(), declared_methods()
    assert {"rank", "world_size", "local_rank", "local_size"} <= attributes
    assert {"start", "all_reduce", "broadcast", "broadcast_object", "barrier", "abort", "close"} <= methods
    undeclared = {name: [w for w, _ in sites] for name, sites in uses.items() if name not in attributes | methods}
    assert not undeclared, f"the trainer uses members that Group does not declare: {undeclared}"

    local = ProcessGroup(2, 4)
    for name in sorted(attributes):  # documented, and set on an instance of each backend
        assert f"``{name}``" in Group.__doc__, f"Group's docstring does not describe {name}"
        for group in (local, mpi_group):
            assert isinstance(getattr(group, name, None), int), f"{type(group).__name__} does not set {name}"
    for name in sorted(methods):
        want = list(inspect.signature(getattr(Group, name)).parameters.values())
        for cls in (ProcessGroup, MPIGroup):
            impl = getattr(cls, name)
            assert not raises_not_implemented(impl), f"{cls.__name__}.{name} is not implemented"
            have = list(inspect.signature(impl).parameters.values())
            assert have[:len(want)] == want, f"{cls.__name__}.{name}{inspect.signature(impl)} is not " \
                                             f"Group.{name}{inspect.signature(getattr(Group, name))}"
            for extra in have[len(want):]:  # a backend's own options come after, by keyword, with a default
                assert extra.kind is inspect.Parameter.KEYWORD_ONLY and extra.default is not extra.empty, \
                    f"{cls.__name__}.{name}: {extra} must be keyword-only with a default"
    for name, sites in uses.items():  # each call the trainer makes is one Group's signature accepts
        for where, call in sites:
            if call is None or name not in methods or any(isinstance(a, ast.Starred) for a in call.args) \
                    or any(k.arg is None for k in call.keywords):
                continue
            try:
                inspect.signature(getattr(Group, name)).bind(None, *call.args, **{k.arg: k for k in call.keywords})
            except TypeError as e:
                pytest.fail(f"{where}: group.{name}(...) does not fit Group.{name}: {e}")


def test_the_interface_test_finds_what_it_looks_for(tmp_path):
    """The parser sees through the forms the trainer writes: group.x, mpi.x(...), self.group.x."""
    src = "def f(group, mpi, self):\n    group.rank; mpi.broadcast_object(1, root=0); self.group.local_size\n" \
          "    other.rank\n"
    tree = ast.parse(src)
    found = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and is_group(n.value)}
    assert found == {"rank", "broadcast_object", "local_size"}


def run_group(world, numel, fn, **kwargs):
    """Run ``fn(group)`` on every rank of a new group; return rank 0's result."""
    threads = get_num_threads()
    group = ProcessGroup(world, numel)
    try:
        assert group.start(fn, **kwargs) is group
        return fn(group)
    finally:
        group.close()
        set_num_threads(threads)


def same(a, b):
    """Equal, of the same types, arrays to the bit (NaN and -0.0 included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def payload(rank):
    rng = np.random.default_rng(rank)
    return {"weights": rng.standard_normal((3, 5)).astype(np.float32), "steps": np.arange(7) + rank,
            "odd": np.array([np.nan, -0.0, np.inf]), "scalar": np.float64(rank),
            "nested": [rank, [2.5, "x", [None, (3, True)]], {"bytes": bytes(range(256))}],
            "text": "é€" * 700 + str(rank)}  # 3.5 kB: longer than the buffer, so it goes in rounds


@pytest.mark.parametrize("root", [0, 1])
def test_broadcast_object_gives_every_rank_the_roots_object(root):
    numel = 16  # 96 bytes a round: the payload takes dozens
    assert len(pickle.dumps(payload(0))) > 8 * numel * 3

    def fn(group):
        mine = payload(group.rank)
        got = group.broadcast_object(mine if group.rank == root else "not this", root)
        wrong = not same(got, payload(root)) or (group.rank == root and got is not mine)
        for n in list(range(0, 200)) + [8 * numel - 1, 8 * numel, 8 * numel + 1, 10_000]:  # every round boundary
            mine = bytes(np.random.default_rng(n + group.rank).integers(0, 256, n, dtype=np.uint8))
            want = bytes(np.random.default_rng(n + root).integers(0, 256, n, dtype=np.uint8))
            wrong += group.broadcast_object(mine if group.rank == root else None, root) != want
        return group.all_reduce([wrong])[0]

    assert run_group(2, numel, fn) == 0


def test_broadcast_object_on_one_rank_returns_the_object_itself_and_checks_its_root():
    group, obj = ProcessGroup(1, 1), {"a": [1]}
    assert group.broadcast_object(obj) is obj
    with pytest.raises(ValueError, match=r"broadcast_object: root must be in \[0, world_size=1\), got 1"):
        group.broadcast_object(obj, root=1)


def test_an_object_the_root_cannot_pickle_fails_on_every_rank_instead_of_hanging():
    def fn(group):
        try:
            group.broadcast_object(None)
        except WorkerError as e:
            return group.all_reduce(["rank 0 could not pickle" in str(e)])[0]
        return group.all_reduce([0.0])[0]

    group = ProcessGroup(2, 4).start(fn)
    try:
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            group.broadcast_object(lambda: 0)  # a local function does not pickle
        assert group.all_reduce([0.0])[0] == 1.0
    finally:
        group.close()


def test_local_rank_and_size_are_the_rank_and_world_on_one_host():
    def fn(group):
        slots = np.zeros((group.world_size, 4))
        slots[group.rank] = group.rank, group.world_size, group.local_rank, group.local_size
        return group.all_reduce(slots.ravel()).reshape(group.world_size, 4)

    np.testing.assert_array_equal(run_group(2, 8, fn, threads=1), [[0, 2, 0, 2], [1, 2, 1, 2]])


def test_start_returns_the_group_and_close_with_abort_kills_a_worker_stuck_in_a_sleep():
    def fn(group):
        time.sleep(600)

    threads = get_num_threads()
    group = ProcessGroup(2, 1)
    try:
        assert group.start(fn) is group
        proc = group.workers[0]
        assert proc.is_alive()
        t0 = time.monotonic()
        group.close(True)  # abort, passed as the interface declares it
        assert time.monotonic() - t0 < 10 and not proc.is_alive() and proc.exitcode == -signal.SIGKILL
        assert group.workers == []
    finally:
        group.close(abort=True)
        set_num_threads(threads)


def test_close_without_abort_waits_for_the_workers_then_kills_after_its_timeout():
    def fn(group):
        time.sleep(600)

    threads = get_num_threads()
    group = ProcessGroup(2, 1).start(fn)
    try:
        proc, t0 = group.workers[0], time.monotonic()
        group.close(False, timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 10 and proc.exitcode == -signal.SIGKILL
    finally:
        group.close(abort=True)
        set_num_threads(threads)


def test_mpi_start_runs_nothing_and_close_aborts_only_when_asked(mpi_group, monkeypatch):
    called, aborted = [], []
    assert mpi_group.start(called.append) is mpi_group and called == []  # the launcher started the ranks
    assert (mpi_group.rank, mpi_group.world_size, mpi_group.local_rank, mpi_group.local_size) == (1, 3, 0, 2)
    monkeypatch.setattr(mpi_group, "abort", lambda code=1: aborted.append(code))
    assert mpi_group.close() is None and aborted == []
    mpi_group.close(True)
    assert aborted == [1]
    with pytest.raises(ValueError, match=r"broadcast_object: root must be in \[0, world_size=3\), got 3"):
        mpi_group.broadcast_object({}, root=3)
