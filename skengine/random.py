"""The engine's one seeded random source (weight init, dropout)."""
import numpy as np

_seed = 0
_rng = np.random.default_rng(_seed)
_gpu_rng = None


def manual_seed(seed):
    """Seed every random draw the engine makes, on the CPU and the GPU."""
    global _seed, _rng, _gpu_rng
    _seed, _rng, _gpu_rng = seed, np.random.default_rng(seed), None


def generator():
    """The NumPy Generator behind CPU draws (init happens on the CPU)."""
    return _rng


def uniform(xp, shape, dtype):
    """Uniform [0, 1) samples as an array of module ``xp``."""
    if xp is np:
        return _rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64).astype(dtype, copy=False)
    global _gpu_rng
    if _gpu_rng is None:
        _gpu_rng = xp.random.default_rng(_seed)
    return _gpu_rng.random(shape, dtype=dtype)


def get_state():
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state
