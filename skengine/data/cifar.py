"""CIFAR-10 / CIFAR-100 from the official Python layout, read with a restricted unpickler."""
import codecs
import io
import math
import operator
import os
import pickle

import numpy as np

try:  # NumPy >= 2 moved the pickled helper; old pickles still name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

# Per-channel mean/std of the training images, in [0, 1] units.
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

LAYOUT = {
    "cifar10": dict(folder="cifar-10-batches-py", meta="batches.meta",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    labels=b"labels", names=b"label_names"),
    "cifar100": dict(folder="cifar-100-python", meta="meta", train=["train"], test=["test"],
                     labels=b"fine_labels", names=b"fine_label_names"),
}


# The most bytes a CIFAR pickle can need: CIFAR-100's train file holds 50,000 images of 3 x 32 x 32 bytes.
MAX_BYTES = 50_000 * 3072
MAX_FILE_BYTES = 4 * MAX_BYTES  # protocol 2 stores the pixels as UTF-8 text: up to 2 bytes each, plus names


def _latin1_encode(text, encoding="latin1"):
    """Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"rejected _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _ndarray(*args):
    """Stands for numpy.ndarray, which a CIFAR pickle only passes to _reconstruct: calling it would allocate."""
    raise pickle.UnpicklingError("refusing to call numpy.ndarray: a CIFAR file only passes it to _reconstruct")


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only the few globals the CIFAR pickles contain, refuses object dtypes
    (numpy's own unpickling of those can crash the process) and lets the pickle allocate at most
    MAX_BYTES beyond its own length. The pure-Python unpickler: the C one allocates a declared
    length before reading it, which a tiny file can set to terabytes; here reads from an in-memory
    file are clamped to what is there."""

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self.budget = MAX_BYTES
        self.allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): _ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode,
            ("builtins", "bytes"): self._bytes,  # protocol 2 writes b"" as bytes()
            ("__builtin__", "bytes"): self._bytes,
        }

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not allowed in a CIFAR file") from None

    def _allocate(self, nbytes, what):
        if not 0 <= nbytes <= self.budget:
            raise pickle.UnpicklingError(
                f"refusing {what} of {nbytes} bytes: a CIFAR file needs at most {MAX_BYTES} in all")
        self.budget -= nbytes

    def _bytes(self, *args):
        if args and hasattr(type(args[0]), "__index__"):  # bytes(n) allocates n zero bytes
            self._allocate(operator.index(args[0]), "bytes(n)")
        return bytes(*args)

    def _reconstruct(self, subtype, shape, dtype):
        dtype = np.dtype(dtype)
        if subtype is not _ndarray or dtype.hasobject:
            raise pickle.UnpicklingError(f"refusing _reconstruct({subtype!r:.60}, dtype {dtype}) in a CIFAR file")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        self._allocate(math.prod(operator.index(n) for n in shape) * dtype.itemsize, "an array")
        return _reconstruct(np.ndarray, shape, dtype)

    def load_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.dtype):  # only a byte order and a size: no fields, subarray or object flags
            ok = isinstance(state, tuple) and len(state) in (8, 9) and state[2:5] == (None,) * 3 and state[7] == 0
        else:  # (version, shape, dtype, is_fortran, data); numpy checks len(data) against the shape
            ok = (isinstance(inst, np.ndarray) and isinstance(state, tuple) and len(state) == 5
                  and isinstance(state[2], np.dtype) and not state[2].hasobject)
        if not ok:
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(inst).__name__} to {state!r:.80}")
        super().load_build()

    def load_bytearray8(self):  # protocol 5, never in a CIFAR file; would allocate its declared length first
        raise pickle.UnpicklingError("refusing BYTEARRAY8: not in a CIFAR file")

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build,
                pickle.BYTEARRAY8[0]: load_bytearray8}


def read_pickle(path):
    """Load one CIFAR pickle (dict with bytes keys) safely; any failure is raised naming ``path``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise pickle.UnpicklingError(f"{path}: {size} bytes, more than a CIFAR file can hold ({MAX_FILE_BYTES})")
        data = f.read()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise pickle.UnpicklingError(f"{path} is not a valid CIFAR pickle: {type(e).__name__}: {e}") from e


def default_root():
    """Data cache directory: $SKENGINE_DATA, else ~/.cache/skengine."""
    return os.environ.get("SKENGINE_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "skengine")


def dataset_dir(root, dataset):
    """Directory holding the dataset's files; `root` may also be that directory itself."""
    if dataset not in LAYOUT:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(LAYOUT)}")
    root = default_root() if root is None else os.fspath(root)
    folder = LAYOUT[dataset]["folder"]
    path = root if os.path.basename(os.path.normpath(root)) == folder else os.path.join(root, folder)
    if not os.path.isdir(path):
        hint = (f" On this machine you can build it with: python3 ../shared/data/make_cifar10.py {root}"
                if dataset == "cifar10" else "")
        raise FileNotFoundError(
            f"{dataset} not found: expected the directory {path} from the official Python archive "
            f"(files {', '.join(LAYOUT[dataset]['train'] + LAYOUT[dataset]['test'])}, "
            f"{LAYOUT[dataset]['meta']}). Extract the archive into {root}, or let "
            f"skengine.data.download_and_extract fetch it (the train and evaluate commands do, unless "
            f"--no-download).{hint}")
    return path


def load_cifar(root=None, dataset="cifar10", train=True):
    """Return (images uint8 (N, 3, 32, 32), labels int64 (N,)) of one split."""
    path = dataset_dir(root, dataset)  # validates `dataset` too
    spec = LAYOUT[dataset]
    images, labels = [], []
    for name in spec["train" if train else "test"]:
        batch = read_pickle(os.path.join(path, name))
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[spec["labels"]], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def class_names(root=None, dataset="cifar10"):
    """Class names (str) in label order."""
    path = dataset_dir(root, dataset)
    meta = read_pickle(os.path.join(path, LAYOUT[dataset]["meta"]))
    return [n.decode() for n in meta[LAYOUT[dataset]["names"]]]
