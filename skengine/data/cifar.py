"""CIFAR-10 / CIFAR-100 from the official Python layout, read with a restricted unpickler."""
import codecs
import io
import math
import operator
import os
import pickle
import stat

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
                    labels=b"labels", names=b"label_names", classes=10),
    "cifar100": dict(folder="cifar-100-python", meta="meta", train=["train"], test=["test"],
                     labels=b"fine_labels", names=b"fine_label_names", classes=100),
}


class DataError(pickle.UnpicklingError, ValueError):
    """A dataset file that cannot be read, or does not hold what the official one does; the message is one
    line naming the file.  An UnpicklingError (what a damaged pickle raised before) and a ValueError."""


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
    """Load one CIFAR pickle (dict with bytes keys) safely; any failure but a missing file is a DataError
    naming ``path``."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block open(), /dev/zero never end
            raise DataError(f"{path} is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {st.st_size} bytes, more than a CIFAR file can hold ({MAX_FILE_BYTES})")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a file that grew since: refused below
    except (FileNotFoundError, DataError):
        raise
    except OSError as e:  # no permission, an I/O error
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{path}: more than the {MAX_FILE_BYTES} bytes a CIFAR file can hold")
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise DataError(f"{path} is not a valid CIFAR pickle: {type(e).__name__}: {e}") from e


def _entry(obj, key, path):
    """``obj[key]`` of a CIFAR pickle, a DataError naming ``path`` when it is not a dict holding ``key``."""
    if not isinstance(obj, dict) or key not in obj:
        got = f"keys {list(obj)!r:.80}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise DataError(f"{path}: not a CIFAR file (expected a dict with the key {key!r}, got {got})")
    return obj[key]


def _integers(value, path, what, low, high):
    """``value`` as an integer array, a DataError naming ``path`` and the first index out of [low, high]
    unless it is an array (or list) of integers in that range."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # a ragged list
        raise DataError(f"{path}: its {what} are not an array ({e})") from None
    if a.size and a.dtype.kind not in "ui":
        raise DataError(f"{path}: its {what} must be integers, got {a.dtype} {a.shape}")
    if a.size and not low <= np.iinfo(a.dtype).min <= np.iinfo(a.dtype).max <= high:  # uint8 pixels: no pass
        bad = np.flatnonzero((a < low) | (a > high))
        if len(bad):
            i = np.unravel_index(bad[0], a.shape)
            where = int(i[0]) if a.ndim == 1 else tuple(map(int, i))
            raise DataError(f"{path}: {what[:-1]} {a[i]} at index {where} is out of range: {what} are {low} to "
                            f"{high}")
    return a


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
    """Return (images uint8 (N, 3, 32, 32), labels int64 (N,)) of one split.  Each file must hold as many
    labels as images, every label one of the dataset's classes, and its meta file (class_names) their names:
    anything else is a DataError naming the file (and the first bad label's index)."""
    path = dataset_dir(root, dataset)  # validates `dataset` too
    spec = LAYOUT[dataset]
    classes = len(class_names(path, dataset))  # the meta file is checked here too: a run needs its names
    images, labels = [], []
    for name in spec["train" if train else "test"]:
        file = os.path.join(path, name)
        batch = read_pickle(file)
        x = _integers(_entry(batch, b"data", file), file, "pixels", 0, 255)
        y = _integers(_entry(batch, spec["labels"], file), file, "labels", 0, classes - 1)
        if x.ndim < 1 or x.size != len(x) * 3072:
            raise DataError(f"{file}: its data has shape {x.shape}, not that of N images of 3 x 32 x 32 = 3072 "
                            f"bytes: (N, 3072)")
        if y.shape != (len(x),):
            raise DataError(f"{file}: {len(x)} images but labels of shape {y.shape}")
        images.append(x.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32))
        labels.append(y.astype(np.int64, copy=False))
    if not sum(map(len, labels)):
        raise DataError(f"{path}: its {'training' if train else 'test'} files "
                        f"({', '.join(spec['train' if train else 'test'])}) hold no images")
    return np.concatenate(images), np.concatenate(labels)


def class_names(root=None, dataset="cifar10"):
    """Class names (str) in label order: as many as the dataset has classes (10, or 100), each one given once,
    else a DataError naming the meta file."""
    path = dataset_dir(root, dataset)
    file, spec = os.path.join(path, LAYOUT[dataset]["meta"]), LAYOUT[dataset]
    names = _entry(read_pickle(file), spec["names"], file)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{file}: {spec['names']!r} must be a list of names, got {names!r:.80}")
    if len(names) != spec["classes"]:
        raise DataError(f"{file}: {len(names)} class names, but {dataset} has {spec['classes']} classes")
    try:
        names = [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: a class name is not UTF-8 ({e})") from None
    for i, name in enumerate(names):  # a table, a report or a confusion matrix of classes no one can tell apart
        if not name.strip() or name in names[:i]:
            why = "is empty" if not name.strip() else f"is also class {names.index(name)}'s"
            raise DataError(f"{file}: class {i}'s name {name!r} {why}: each class needs a name of its own")
    return names
