"""save / load: nested dicts of tensors and plain values in one .npz, no pickle, written atomically.

Arrays are stored under their "/"-joined key path; plain values (numbers,
strings, bools, None, lists) go into one JSON entry.  The file is written to
a temporary name beside the target and renamed over it, so a crash never
leaves a half-written checkpoint where a good one was; what a writer killed
midway leaves is removed by the next save or load in that folder.  A full
disk is one OSError naming the folder and the space needed.  load() checks every
entry's declared sizes before it reads anything, so a small file cannot make
it allocate much more than the file holds.
"""
import contextlib
import errno
import json
import math
import os
import re
import shutil
import struct
import tempfile
import zipfile

import numpy as np

from .autograd import NUMERIC_KINDS, Tensor
from .backend import is_array, to_numpy

try:
    import fcntl
except ImportError:  # no flock (Windows): temporaries are never taken for stale there
    fcntl = None

_JSON_KEY = "__json__"
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # no space, or no quota left
_MAX_RATIO = 100  # how far a compressed entry may expand (save() stores entries uncompressed, ratio 1)
_TMP_PREFIX = ".tmp-skengine-"  # atomic_write's own temporaries, so that no file of a user is taken for one
_TMP_SUFFIXES = (".npz", ".safetensors", ".json", ".jsonl", ".csv", ".gz")  # those atomic_write's callers pass
_TMP_NAME = re.compile(rf"\.tmp-skengine-[a-z0-9_]{{8}}({'|'.join(map(re.escape, _TMP_SUFFIXES))})")  # mkstemp's


def _show(path):
    return "".join(f"[{k!r}]" for k in path)


def _flatten(obj, path, flat):
    """Fill ``flat`` ("/"-joined str key -> (key path, array or JSON-able value)); keys are stored as str."""
    if isinstance(obj, dict):
        if not obj and path:
            value = {}
        else:
            for k, v in obj.items():
                if "/" in str(k) or "\0" in str(k):  # "/" separates levels; a zip name ends at NUL
                    raise ValueError(f"save: key {str(k)!r} contains '/' or NUL, which a stored name cannot hold")
                _flatten(v, path + (k,), flat)
            return
    elif isinstance(obj, Tensor) or is_array(obj) or isinstance(obj, np.generic):
        value = to_numpy(obj.data if isinstance(obj, Tensor) else obj)
        if value.dtype.kind not in NUMERIC_KINDS:  # load() gives Tensors, which hold numbers only
            raise TypeError(f"save: array at {_show(path)} has dtype {value.dtype}; save holds bool, integer and "
                            f"floating-point arrays (what a Tensor holds)")
    else:
        try:
            json.dumps(obj)
        except TypeError as e:
            raise TypeError(f"save: value at {_show(path)} of type {type(obj).__name__} cannot be saved") from e
        value = obj
    key = "/".join(map(str, path))
    if key in flat:
        raise ValueError(f"save: the keys {_show(flat[key][0])} and {_show(path)} would both be stored as "
                         f"{key!r} (keys are saved as str), so one would be lost")
    flat[key] = (path, value)


def save(obj, path):
    """Write a (nested) dict of Tensors, arrays and JSON-able values to ``path`` (.npz)."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict (e.g. model.state_dict()), got {type(obj).__name__}")
    flat = {}
    _flatten(obj, (), flat)
    arrays = {k: v for k, (_, v) in flat.items() if isinstance(v, np.ndarray)}
    plain = {k: v for k, (_, v) in flat.items() if not isinstance(v, np.ndarray)}
    if _JSON_KEY in arrays:
        raise ValueError(f"save: the key {_JSON_KEY!r} is reserved")
    arrays[_JSON_KEY] = np.frombuffer(json.dumps(plain).encode(), dtype=np.uint8)

    write_npz(path, arrays)


def write_npz(path, arrays):
    """Write {name: array} as an uncompressed .npz, atomically: what np.savez does, without its keyword
    arguments ("file", "allow_pickle") taking names away from the arrays."""
    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, a in arrays.items():
                with z.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)

    # the arrays, and per entry its .npy header and the zip's records of it (about 200 bytes and its name twice)
    atomic_write(path, write, size=sum(a.nbytes + 256 + 2 * len(name) for name, a in arrays.items()))


def atomic_write(path, write, suffix=".npz", size=None):
    """Create the file ``path`` through ``write(a temporary path)`` in the same folder (a name ending in
    ``suffix``, one of _TMP_SUFFIXES), synced, then renamed over ``path``: an error or a kill midway leaves an
    existing file as it was.  The temporary is locked (flock) while it is written, which tells a live writer's
    from what a killed one left; those are removed first.  A full disk is one OSError (ENOSPC) naming the
    folder, the free space and ``size``, the bytes the file needs (when the caller knows them)."""
    if suffix not in _TMP_SUFFIXES:  # a temporary that no cleanup would recognise as this writer's
        raise ValueError(f"atomic_write: suffix {suffix!r} is not one of {', '.join(_TMP_SUFFIXES)}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    fd, tmp = _locked_temporary(path, folder, suffix)
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            umask = os.umask(0o022)  # read the umask (setting it is the only way), then restore it
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # the mode of a plain open(), not mkstemp's 0600
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        finally:
            os.close(fd)  # the lock goes with it, after the rename: no cleaner ever takes a file being written
    except OSError as e:
        if e.errno in _FULL:  # one error, not the chain of what zipfile's closing raised again
            raise _disk_full(path, folder, size) from None
        raise


def _locked_temporary(path, folder, suffix):
    """A new temporary in ``folder`` (mkstemp) and its descriptor, holding an exclusive flock on it; an error
    names ``path``, the file asked for, not the temporary."""
    while True:
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX, suffix=suffix)
        except OSError as e:
            if e.errno in _FULL:
                raise _disk_full(path, folder, None) from None
            raise type(e)(e.errno, e.strerror, path) from None
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits out a cleaner that looked at it in the instant before
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:  # that cleaner took it for stale and removed it: make another
            pass
        except OSError:  # a file system without locks: written unlocked, and never taken for stale there
            return fd, tmp
        os.close(fd)


def _disk_full(path, folder, size):
    try:
        free = f"which has {shutil.disk_usage(folder).free / 1e6:.1f} MB free"
    except OSError:
        free = "whose free space is unknown"
    need = f"about {size / 1e6:.1f} MB" if size else "more space"
    return OSError(errno.ENOSPC, f"No space left on device: writing {path} needs {need} in {folder}, {free}; "
                                 f"an existing {os.path.basename(path)} is kept as it was")


def remove_stale_temporaries(folder):
    """Delete the temporaries that atomic_write's writers killed midway left in ``folder``: regular files
    named like .tmp-skengine-abcd1234.npz (with one of _TMP_SUFFIXES) whose writer's lock is gone (the OS drops
    a lock when its process ends, however it ends; a writer still at work, in this process or another, holds
    it).  Other names, links, folders and a folder that cannot be read are left alone; return the paths
    removed."""
    removed = []
    if fcntl is None:
        return removed
    with contextlib.suppress(OSError):
        with os.scandir(folder) as entries:
            names = [e.path for e in entries if _TMP_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
        for name in names:
            with contextlib.suppress(OSError):  # gone meanwhile, not ours to open, locked by a live writer
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)  # RDWR: NFS's flock needs it
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if os.path.samestat(os.fstat(fd), os.lstat(name)):  # still the file looked at
                        os.remove(name)
                        removed.append(name)
                finally:
                    os.close(fd)
    return removed


def _memory_bytes():
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@contextlib.contextmanager
def _foreign(path):
    """Turn what zipfile, numpy and json raise on a damaged or foreign file into one ValueError naming it."""
    try:
        yield
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError, NotImplementedError,
            struct.error) as e:
        raise _not_npz(path, f"{type(e).__name__}: {e}") from e


def _not_npz(path, why):
    return ValueError(f"skengine.load: {path} is not an .npz file written by skengine.save ({why})")


def _read_npz(path):
    """The arrays of the .npz at ``path`` by entry name. Every entry's sizes are checked before anything
    is read: its .npy header must declare exactly the entry's size, which must not be an absurd expansion
    of the bytes stored; all together they must fit in memory and in the file."""
    arrays = {}
    if os.path.exists(path) and not os.path.isfile(path):  # a device or a pipe: zipfile would read for ever
        raise _not_npz(path, "not a regular file")
    with open(path, "rb") as raw:
        with _foreign(path):
            z = zipfile.ZipFile(raw)
            infos = z.infolist()
        names = [i.filename for i in infos]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # zipfile would read the last of them: one of the values would be lost unseen
            raise _not_npz(path, f"entry {twice[0]!r} is stored {names.count(twice[0])} times")
        for i in infos:
            if not i.filename.endswith(".npy"):
                raise _not_npz(path, f"entry {i.filename!r} is not an .npy array")
            if i.file_size > _MAX_RATIO * i.compress_size + 4096:
                raise _not_npz(path, f"entry {i.filename!r} expands {i.compress_size} bytes to {i.file_size}, "
                                     f"more than {_MAX_RATIO}x (save stores arrays uncompressed; so large an "
                                     f"expansion is refused as a possible zip bomb)")
        stored, size = sum(i.compress_size for i in infos), os.fstat(raw.fileno()).st_size
        if stored > size:
            raise _not_npz(path, f"its entries claim {stored} stored bytes, the file has {size}: they overlap")
        total, memory = sum(i.file_size for i in infos), _memory_bytes()
        if memory and total > memory:
            raise ValueError(f"skengine.load: {path} declares {total} bytes of arrays, more than this "
                             f"machine's memory ({memory} bytes)")
        for i in infos:
            with _foreign(path), z.open(i) as f:
                version = np.lib.format.read_magic(f)  # 3.0 differs from 2.0 only in the header's text encoding
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                declared = f.tell() + math.prod(shape) * dtype.itemsize
            if dtype.hasobject:
                raise ValueError(f"skengine.load: {path}: entry {i.filename!r} holds Python objects, which would "
                                 f"need a pickle; load reads with allow_pickle=False")
            if declared != i.file_size:
                raise _not_npz(path, f"entry {i.filename!r} is {i.file_size} bytes, its .npy header declares "
                                     f"{declared}")
            with _foreign(path), z.open(i) as f:
                arrays[i.filename[:-len(".npy")]] = np.lib.format.read_array(f, allow_pickle=False)
    return arrays


def _unique(pairs):
    """A JSON object's dict; a key that it holds twice (json would keep the last) is a ValueError."""
    out = dict(pairs)
    if len(out) < len(pairs):
        raise ValueError(f"the key {next(k for k, _ in pairs if sum(k == j for j, _ in pairs) > 1)!r} is stored twice")
    return out


def load(path):
    """Read what save() wrote: nested dicts with Tensors (on the CPU) and plain values."""
    path = os.fspath(path)
    remove_stale_temporaries(os.path.dirname(os.path.abspath(path)))
    flat = _read_npz(path)
    with _foreign(path):
        plain = json.loads(flat.pop(_JSON_KEY).tobytes().decode(), object_pairs_hook=_unique) \
            if _JSON_KEY in flat else {}
    if not isinstance(plain, dict):
        raise _not_npz(path, f"entry {_JSON_KEY!r} is not a JSON object")
    out = {}
    for key, value in [(k, Tensor(v)) for k, v in flat.items()] + list(plain.items()):
        node, parts = out, key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise _not_npz(path, f"key {key!r} passes through a value")
        if parts[-1] in node:
            raise _not_npz(path, f"key {key!r} is stored twice")
        node[parts[-1]] = value
    return out
