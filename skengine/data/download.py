"""Fetch the official CIFAR archives (MD5-checked, atomic) and extract them safely."""
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import PurePosixPath

from ..serialization import atomic_write
from .cifar import LAYOUT, dataset_dir, default_root

ARCHIVES = {  # dataset -> (canonical URL, MD5 of the archive)
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def md5sum(path):
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url, dest, md5, timeout=60):
    """Stream `url` into a temp file beside `dest` (atomic_write); it becomes `dest` only if its MD5 matches."""
    def write(tmp):
        h = hashlib.md5(usedforsecurity=False)
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != md5:
            raise RuntimeError(f"MD5 mismatch for {url}: got {h.hexdigest()}, expected {md5}")

    atomic_write(dest, write, ".gz")


def check_member(member):
    """Raise ValueError unless `member` is a plain file, directory or link that stays inside.

    Names and link targets must be relative and free of '..': then no path, even one
    passing through links from the same archive, can leave the extraction directory.
    """
    for path in [member.name] + ([member.linkname] if member.issym() or member.islnk() else []):
        p = PurePosixPath(path)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"unsafe archive member {member.name!r} (path {path!r})")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ValueError(f"unsafe archive member {member.name!r}: special file")


def safe_extract(archive, root, folder):
    """Extract `archive` (which must hold the directory `folder`, not a link) into `root`; `root/folder`
    appears only when complete, and only where nothing (not even a dangling link) is in the way."""
    dest = os.path.join(root, folder)
    if os.path.lexists(dest):  # e.g. a dangling symlink: never replace it or write through it
        kind = "symlink" if os.path.islink(dest) else "directory" if os.path.isdir(dest) else "file"
        raise FileExistsError(f"{dest} already exists (a {kind}), so {archive} is not extracted there; "
                              f"remove it, or make it the dataset directory, and run again")
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            check_member(m)
        tmp = tempfile.mkdtemp(dir=root, prefix=".extract-")
        try:
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members, **extra)
            src = os.path.join(tmp, folder)
            if os.path.islink(src):  # it would point elsewhere in `root` once moved there
                raise ValueError(f"unsafe archive member {folder!r} in {archive}: a symlink to "
                                 f"{os.readlink(src)!r}, not a directory")
            if not os.path.isdir(src):
                raise RuntimeError(f"{archive} does not contain the directory {folder}/")
            os.replace(src, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def download_and_extract(dataset="cifar10", root=None, url=None, md5=None, timeout=60):
    """Make sure `root/<dataset folder>` exists, downloading it if needed; return `root`.

    `root` defaults to $SKENGINE_DATA or ~/.cache/skengine; `url` and `md5` default to
    the official archive. The archive is kept in `root` and reused if already there.
    """
    root = default_root() if root is None else os.fspath(root)
    folder = LAYOUT[dataset]["folder"]
    if os.path.isdir(os.path.join(root, folder)):
        return root
    official_url, official_md5 = ARCHIVES[dataset]
    url, md5 = url or official_url, md5 or official_md5
    os.makedirs(root, exist_ok=True)
    archive = os.path.join(root, os.path.basename(official_url))
    if not (os.path.isfile(archive) and md5sum(archive) == md5):
        try:
            fetch(url, archive, md5, timeout)
        except OSError as e:
            raise RuntimeError(
                f"could not download {dataset} from {url}: {e}. Without network access, fetch "
                f"{official_url} elsewhere and put it at {archive} (or extract it so that "
                f"{os.path.join(root, folder)} exists), then run again.") from e
    safe_extract(archive, root, folder)
    return root


def dataset_root(root, dataset="cifar10", download=True):
    """The root to read ``dataset`` from: ``root`` (None: the cache) where the data is, else, with
    ``download``, where download_and_extract puts it; without, dataset_dir's FileNotFoundError (where the
    data was expected, and how to get it)."""
    try:
        dataset_dir(root, dataset)
        return root
    except FileNotFoundError:
        if not download:
            raise
        return download_and_extract(dataset, root)
