"""CIFAR-10 / CIFAR-100 from the official Python layout, read with a restricted unpickler."""
import codecs
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


def _latin1_encode(text, encoding="latin1"):
    """Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"rejected _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the few globals the CIFAR pickles contain."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): bytes,      # protocol 2 writes b"" as bytes()
        ("__builtin__", "bytes"): bytes,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not allowed in a CIFAR file") from None


def read_pickle(path):
    """Load one CIFAR pickle (dict with bytes keys) safely."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="bytes").load()


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
            f"{LAYOUT[dataset]['meta']}). Extract the archive into {root}, or rerun with --download "
            f"to fetch it.{hint}")
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
