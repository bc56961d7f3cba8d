"""The communicator interface every backend implements (``local.ProcessGroup``, ``mpi.MPIGroup``)."""
import numpy as np


class Group:
    """``world_size`` ranks, this one ``rank``, exchanging flat float64 vectors.

    A backend implements ``all_reduce``, ``broadcast``, ``abort`` and ``close``; ``barrier`` is an
    all-reduce of nothing unless the backend has its own.  Every rank calls the collectives in the same
    order with vectors of the same length.  A CuPy vector comes back as a CuPy array (staged through the
    host where the backend needs it), a NumPy one as NumPy.
    """

    rank = 0
    world_size = 1

    def all_reduce(self, vec):
        """The sum over ranks of each rank's ``vec`` (1-D), as float64, with the same bits on every rank."""
        raise NotImplementedError

    def broadcast(self, vec, root=0):
        """Rank ``root``'s ``vec`` (1-D, float64 values) on every rank, exactly; the others' ``vec`` gives
        only the length."""
        raise NotImplementedError

    def barrier(self):
        """Return once every rank has called it."""
        self.all_reduce(np.zeros(1))

    def abort(self, code=1):
        """End every rank of the group now (an error on one rank that the others cannot know of)."""
        raise NotImplementedError

    def close(self, abort=False):
        """Release the group; with ``abort`` end the other ranks instead of waiting for them."""
        raise NotImplementedError
