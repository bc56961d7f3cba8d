"""The communicator interface every backend implements (``local.ProcessGroup``, ``mpi.MPIGroup``) and the
trainer uses whole, the same on both (tests/test_group.py checks every member the trainer touches):

- ``rank``, ``world_size``: this rank and the number of ranks;
- ``local_rank``, ``local_size``: the same among the ranks on this host;
- ``start(fn)``: the start-up hook, before the first collective (returns the group);
- ``all_reduce(vec)``, ``broadcast(vec, root=0)``, ``barrier()``: collectives on flat float64 vectors;
- ``broadcast_object(obj, root=0)``: rank ``root``'s picklable object on every rank;
- ``close(abort=False)``: release the group; ``abort(code=1)``: end every rank now.
"""
import numpy as np


class Group:
    """``world_size`` ranks, this one ``rank``, exchanging flat float64 vectors and picklable objects.

    Attributes (ints, set by every backend):

    - ``rank``: this process's rank, in ``[0, world_size)``;
    - ``world_size``: the number of ranks;
    - ``local_rank``: this process's place among the ranks on its own host, in ``[0, local_size)``;
    - ``local_size``: the number of ranks on this host (all of them for ``ProcessGroup``).

    A backend implements every method below; ``barrier`` is an all-reduce of nothing unless the backend
    has its own.  Every rank calls the collectives in the same order with vectors of the same length.
    A CuPy vector comes back as a CuPy array (staged through the host where the backend needs it), a
    NumPy one as NumPy.
    """

    rank: int
    world_size: int
    local_rank: int
    local_size: int

    def start(self, fn):
        """The start-up hook, called once before the first collective: begin the group's work, with
        ``fn(group)`` running on every rank other than this process's own; returns the group.  Where the
        backend starts the other ranks itself (``ProcessGroup`` forks them) they run ``fn``; where a
        launcher already started them (``MPIGroup``: every rank runs the same program) it does nothing."""
        raise NotImplementedError

    def all_reduce(self, vec):
        """The sum over ranks of each rank's ``vec`` (1-D), as float64, with the same bits on every rank."""
        raise NotImplementedError

    def broadcast(self, vec, root=0):
        """Rank ``root``'s ``vec`` (1-D, float64 values) on every rank, exactly; the others' ``vec`` gives
        only the length."""
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        """Rank ``root``'s ``obj`` (anything picklable: settings, a checkpoint) on every rank; the others'
        ``obj`` is ignored.  The other ranks get an unpickled copy."""
        raise NotImplementedError

    def barrier(self):
        """Return once every rank has called it."""
        self.all_reduce(np.zeros(1))

    def abort(self, code=1):
        """End every rank of the group now (an error on one rank that the others cannot know of)."""
        raise NotImplementedError

    def close(self, abort=False):
        """Release the group, once its work is done; with ``abort`` (after an error) end the other ranks at
        once instead of waiting for them."""
        raise NotImplementedError

    def _check_root(self, root, what="broadcast"):
        if not 0 <= root < self.world_size:
            raise ValueError(f"{what}: root must be in [0, world_size={self.world_size}), got {root!r}")


__all__ = ["Group"]
