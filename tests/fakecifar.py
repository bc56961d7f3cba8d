"""A learnable fake CIFAR-10 in the official layout, written by the tests that need one."""
import pickle

import numpy as np

NAMES = [f"class{i}" for i in range(10)]


def write_cifar(root, n_train=320, n_test=100, seed=0):
    """Learnable fake CIFAR-10: each class is a different colour plus noise."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    colours = rng.integers(30, 225, size=(10, 3))

    def batch(n):
        labels = rng.integers(0, 10, n)
        x = colours[labels][:, :, None, None] + rng.normal(0, 25, (n, 3, 32, 32))
        return {b"data": np.clip(x, 0, 255).astype(np.uint8).reshape(n, -1), b"labels": labels.tolist()}

    per = n_train // 5
    for b in range(5):
        with open(folder / f"data_batch_{b + 1}", "wb") as f:
            pickle.dump(batch(per), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in NAMES]}, f, protocol=2)
    return root


def edit_file(root, name, change):
    """Rewrite the file ``name`` of write_cifar's folder under ``root`` as ``change(its dict)`` returns it."""
    path = root / "cifar-10-batches-py" / name
    with open(path, "rb") as f:
        content = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump(change(content), f, protocol=2)
    return root
