"""Tests for skengine.data: CIFAR reading, safe download/extract, and the batch iterator."""
import codecs
import functools
import hashlib
import http.server
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from skengine.data import CIFAR_MEAN_STD, DataLoader, class_names, crop_flip, cutout, download_and_extract, load_cifar
from skengine.data.cifar import DataError, read_pickle
from skengine.data.download import safe_extract

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- fake datasets

def planes(i):
    """A 3072-byte CIFAR row for image i: R, G, B planes of 32x32, row-major, values by formula."""
    k = np.arange(1024)
    return np.concatenate([(i + k) % 256, (2 * i + 3 * k) % 256, np.full(1024, i % 256)]).astype(np.uint8)


def dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # like make_cifar10.py: bytes pickled via _codecs.encode


def write_cifar10(root, per_batch=2):
    """Official cifar-10-batches-py layout; image i of the train split is planes(i), label i % 10."""
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d)
    for b in range(6):
        ids = range(b * per_batch, (b + 1) * per_batch)
        dump(os.path.join(d, f"data_batch_{b + 1}" if b < 5 else "test_batch"), {
            b"batch_label": b"", b"labels": [i % 10 for i in ids],
            b"data": np.stack([planes(i) for i in ids]), b"filenames": [b"f%d.png" % i for i in ids]})
    dump(os.path.join(d, "batches.meta"), {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                           b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return d


def write_cifar100(root):
    d = os.path.join(root, "cifar-100-python")
    os.makedirs(d)
    for split, ids in (("train", range(3)), ("test", range(3, 5))):
        dump(os.path.join(d, split), {b"data": np.stack([planes(i) for i in ids]),
                                      b"fine_labels": [50 + i for i in ids], b"coarse_labels": [i for i in ids]})
    dump(os.path.join(d, "meta"), {b"fine_label_names": [b"f%d" % i for i in range(100)],
                                   b"coarse_label_names": [b"c%d" % i for i in range(20)]})
    return d


# ---------------------------------------------------------------- cifar.py

def test_load_cifar10_layout_and_dtypes(tmp_path):
    write_cifar10(tmp_path)
    x, y = load_cifar(tmp_path, "cifar10", train=True)
    assert x.dtype == np.uint8 and x.shape == (10, 3, 32, 32)
    assert y.dtype == np.int64 and y.tolist() == [i % 10 for i in range(10)]
    for i in (0, 7):  # channel-major planes, row-major pixels: pixel (r, c) of R is byte 32 r + c
        assert x[i, 0, 0, 1] == (i + 1) % 256 and x[i, 0, 2, 5] == (i + 69) % 256
        assert x[i, 1, 1, 0] == (2 * i + 96) % 256 and (x[i, 2] == i).all()
    xt, yt = load_cifar(os.path.join(tmp_path, "cifar-10-batches-py"), train=False)  # root may be the folder
    assert xt.shape == (2, 3, 32, 32) and yt.tolist() == [0, 1] and xt[1, 2, 31, 31] == 11
    assert class_names(tmp_path, "cifar10") == CIFAR10_NAMES


def test_load_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    x, y = load_cifar(tmp_path, "cifar100", train=True)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [50, 51, 52]
    assert load_cifar(tmp_path, "cifar100", train=False)[1].tolist() == [53, 54]
    names = class_names(tmp_path, "cifar100")
    assert len(names) == 100 and names[7] == "f7"


def test_missing_directory_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_cifar(tmp_path / "nowhere", "cifar10")
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "download_and_extract" in msg and "make_cifar10.py" in msg
    with pytest.raises(ValueError):
        load_cifar(tmp_path, "mnist")


def test_old_numpy_module_name_is_accepted(tmp_path):
    """Official (Python 2 era) files name numpy.core.multiarray._reconstruct."""
    data = pickle.dumps({b"data": np.arange(6, dtype=np.uint8)}, protocol=2)
    assert b"numpy._core.multiarray\n_reconstruct" in data
    path = tmp_path / "old"
    path.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert read_pickle(path)[b"data"].tolist() == [0, 1, 2, 3, 4, 5]


class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Rot13:
    def __reduce__(self):
        return codecs.encode, ("abc", "rot13")


def test_restricted_unpickler_rejects_os_system(tmp_path):
    marker = tmp_path / "pwned"
    d = write_cifar10(tmp_path)
    dump(os.path.join(d, "data_batch_3"), {b"data": SystemCall(marker), b"labels": []})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os|nt)\.system"):
        load_cifar(tmp_path, "cifar10")
    assert not marker.exists()
    assert not pickle.loads(pickle.dumps(SystemCall(marker))) and marker.exists()  # the payload is real


def test_restricted_unpickler_allows_only_latin1_codec(tmp_path):
    path = tmp_path / "rot13"
    dump(path, Rot13())
    with pytest.raises(pickle.UnpicklingError, match="rot13"):
        read_pickle(path)


class Reduce:
    """Pickles as func(*args) without calling it."""
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct


@pytest.mark.parametrize("payload,pattern", [
    (Reduce(bytes, 2 ** 31), r"refusing bytes\(n\) of 2147483648 bytes"),  # 40 bytes asking for 2 GB
    (Reduce(_reconstruct, np.ndarray, (2 ** 31,), b"b"), r"refusing an array of 2147483648 bytes"),
    (Reduce(np.ndarray, (2 ** 28,)), r"refusing to call numpy\.ndarray"),
    (np.array([1, None], dtype=object), r"refusing to set the state of a .*DType"),  # object arrays: no
], ids=["bytes", "_reconstruct", "ndarray", "object-dtype"])
def test_restricted_unpickler_caps_allocations(tmp_path, payload, pattern):
    path = tmp_path / "data_batch_1"
    dump(path, payload)
    assert path.stat().st_size < 200
    with pytest.raises(pickle.UnpicklingError, match=re.escape(str(path)) + ".*" + pattern):
        read_pickle(path)


def test_restricted_unpickler_refuses_declared_lengths_beyond_the_file(tmp_path):
    """BINBYTES8 declaring a terabyte: the C unpickler allocates it before reading."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x04\x8e" + (2 ** 40).to_bytes(8, "little") + b"abc")
    with pytest.raises(pickle.UnpicklingError, match=re.escape(f"{path} is not a valid CIFAR pickle")):
        read_pickle(path)


def test_object_array_with_a_short_list_does_not_crash(tmp_path):
    """numpy's own unpickling of an object array whose list is shorter than its shape reads out of bounds
    (a segfault in NumPy 2.4): refused before numpy sees it. In a child process, since it may crash."""
    path = tmp_path / "data_batch_1"
    dump(path, np.array([1, None], dtype=object))
    path.write_bytes(path.read_bytes().replace(b"K\x01Ne", b"e"))  # the list [1, None] becomes []
    code = ("import pickle, sys; from skengine.data.cifar import DataError, read_pickle\n"
            "try: read_pickle(sys.argv[1])\nexcept pickle.UnpicklingError as e: print(e)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                         cwd=root, env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0 and "refusing to set the state" in out.stdout, (out.returncode, out.stderr[-500:])


def test_oversized_file_is_refused_unread(tmp_path):
    from skengine.data.cifar import MAX_FILE_BYTES
    big = tmp_path / "huge"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(pickle.UnpicklingError, match=re.escape(f"{big}: {MAX_FILE_BYTES + 1} bytes, more than")):
        read_pickle(big)


def test_truncated_batch_error_names_the_file(tmp_path):
    batch = os.path.join(write_cifar10(tmp_path), "data_batch_2")
    with open(batch, "rb+") as f:
        f.truncate(os.path.getsize(batch) // 2)
    with pytest.raises(pickle.UnpicklingError, match=re.escape(f"{batch} is not a valid CIFAR pickle")):
        load_cifar(tmp_path, "cifar10")



def edit(path, change):
    """Rewrite the CIFAR pickle at ``path`` as ``change(its content)``."""
    with open(path, "rb") as f:
        content = pickle.load(f, encoding="bytes")
    dump(path, change(content))


def with_label(key, index, value):
    return lambda b: {**b, key: b[key][:index] + [value] + b[key][index + 1:]}


@pytest.mark.parametrize("dataset,name,value", [
    ("cifar10", "data_batch_2", 255), ("cifar10", "data_batch_2", 10), ("cifar10", "test_batch", -1),
    ("cifar100", "train", 100), ("cifar100", "test", -1)])
def test_a_label_out_of_range_is_refused_naming_the_file_and_index(tmp_path, dataset, name, value):
    """A label that is not one of the dataset's 10 (100) classes, at index 1 of one file: a DataError (one line)
    naming that file, the index within it and the value, from the split holding it; the other split loads."""
    d = write_cifar10(tmp_path) if dataset == "cifar10" else write_cifar100(tmp_path)
    key, classes = (b"labels", 10) if dataset == "cifar10" else (b"fine_labels", 100)
    path = os.path.join(d, name)
    edit(path, with_label(key, 1, value))
    train = not name.startswith("test")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path, dataset, train=train)
    assert str(e.value) == f"{path}: label {value} at index 1 is out of range: labels are 0 to {classes - 1}"
    sizes = {("cifar10", True): 10, ("cifar10", False): 2, ("cifar100", True): 3, ("cifar100", False): 2}
    assert len(load_cifar(tmp_path, dataset, train=not train)[1]) == sizes[dataset, not train]


@pytest.mark.parametrize("count", [11, 9])
def test_class_names_must_be_as_many_as_the_datasets_classes(tmp_path, count):
    """batches.meta with 11 (or 9) names for CIFAR-10's 10 classes: refused naming the file by class_names and by
    load_cifar (whose labels must each have a name), rather than an 11-class model trained on CIFAR-10."""
    meta = os.path.join(write_cifar10(tmp_path), "batches.meta")
    dump(meta, {b"label_names": [b"c%d" % i for i in range(count)]})
    for load in (class_names, load_cifar):
        with pytest.raises(DataError) as e:
            load(tmp_path, "cifar10")
        assert str(e.value) == f"{meta}: {count} class names, but cifar10 has 10 classes"


@pytest.mark.parametrize("name,change,message", [
    ("data_batch_2", lambda b: [b[b"data"]], "not a CIFAR file (expected a dict with the key b'data', got a list)"),
    ("data_batch_2", lambda b: {b"labels": b[b"labels"]},
     "not a CIFAR file (expected a dict with the key b'data', got keys [b'labels'])"),
    ("test_batch", lambda b: {b"data": b[b"data"]}, "not a CIFAR file (expected a dict with the key b'labels'"),
    ("data_batch_2", lambda b: {"data": b[b"data"], b"labels": b[b"labels"]},
     "not a CIFAR file (expected a dict with the key b'data', got keys ['data', b'labels'])"),
    ("data_batch_2", lambda b: {**b, b"labels": [2.0, 3.0]}, "its labels must be integers, got float64 (2,)"),
    ("data_batch_2", lambda b: {**b, b"labels": [True, False]}, "its labels must be integers, got bool (2,)"),
    ("data_batch_2", lambda b: {**b, b"labels": [2 ** 70, 3]}, "its labels must be integers, got object (2,)"),
    ("data_batch_2", lambda b: {**b, b"labels": [2, [3]]}, "its labels are not an array"),
    ("data_batch_2", lambda b: {**b, b"labels": [2]}, "2 images but labels of shape (1,)"),
    ("data_batch_2", lambda b: {**b, b"labels": [[2], [3]]}, "2 images but labels of shape (2, 1)"),
    ("data_batch_2", lambda b: {**b, b"data": b[b"data"][:, :1024]},
     "its data has shape (2, 1024), not that of N images of 3 x 32 x 32 = 3072 bytes: (N, 3072)"),
    ("data_batch_2", lambda b: {**b, b"data": b[b"data"].ravel()}, "its data has shape (6144,), not that of N"),
    ("data_batch_2", lambda b: {**b, b"data": b[b"data"] / 255}, "its pixels must be integers, got float64"),
    # image 2's red plane is (2 + k) % 256 at byte k: doubled, byte 126 is the first above 255
    ("data_batch_2", lambda b: {**b, b"data": b[b"data"].astype(np.int16) * 2},
     "pixel 256 at index (0, 126) is out of range: pixels are 0 to 255"),
    ("batches.meta", lambda m: [m], "not a CIFAR file (expected a dict with the key b'label_names', got a list)"),
    ("batches.meta", lambda m: {b"label_names": b"airplane"}, "b'label_names' must be a list of names"),
    ("batches.meta", lambda m: {b"label_names": list(range(10))}, "b'label_names' must be a list of names"),
    ("batches.meta", lambda m: {b"label_names": [b"\xff"] * 10}, "a class name is not UTF-8"),
    # ten names, but not ten classes one can tell apart (accepted: a table and a confusion matrix of one class)
    ("batches.meta", lambda m: {b"label_names": [b"cat"] * 10},
     "class 1's name 'cat' is also class 0's: each class needs a name of its own"),
    ("batches.meta", lambda m: {b"label_names": m[b"label_names"][:3] + [b" "] + m[b"label_names"][4:]},
     "class 3's name ' ' is empty: each class needs a name of its own"),
])
def test_a_file_that_does_not_hold_what_cifar_does_is_one_line_naming_it(tmp_path, name, change, message):
    """What the official files hold (a dict of an (N, 3072) uint8 array and N integer labels; a list of names):
    anything else is a DataError (an UnpicklingError and a ValueError, what the commands catch) naming the
    file, instead of a KeyError or a failed reshape, or pixels and labels silently cast."""
    path = os.path.join(write_cifar10(tmp_path), name)
    edit(path, change)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path, "cifar10", train=name != "test_batch")
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)
    assert isinstance(e.value, pickle.UnpicklingError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo, functools.partial(os.symlink, "/dev/zero")],
                         ids=["folder", "fifo", "dev-zero"])
def test_a_batch_file_that_is_not_a_file_is_one_line_naming_it(tmp_path, make, deadline):
    """A folder, a FIFO (open would wait for a writer for ever) or a link to /dev/zero (read would never end)
    where data_batch_4 should be."""
    path = os.path.join(write_cifar10(tmp_path), "data_batch_4")
    os.remove(path)
    make(path)
    with pytest.raises(DataError, match=f"^{re.escape(path)} is not a regular file$"):
        load_cifar(tmp_path, "cifar10")


def test_an_empty_split_is_one_line_naming_its_files(tmp_path):
    """A test split of no images, which no run can be tested on."""
    d = write_cifar10(tmp_path)
    dump(os.path.join(d, "test_batch"), {b"data": [], b"labels": []})
    with pytest.raises(DataError, match=re.escape(f"{d}: its test files (test_batch) hold no images")):
        load_cifar(tmp_path, "cifar10", train=False)


@pytest.mark.parametrize("name,change,message", [
    ("test_batch", with_label(b"labels", 3, 255), "label 255 at index 3 is out of range: labels are 0 to 9"),
    ("data_batch_5", with_label(b"labels", 0, -1), "label -1 at index 0 is out of range: labels are 0 to 9"),
    ("batches.meta", lambda m: {b"label_names": m[b"label_names"] + [b"extra"]},
     "11 class names, but cifar10 has 10 classes"),
    ("batches.meta", lambda m: {b"label_names": m[b"label_names"][:9] + [m[b"label_names"][2]]},
     "class 9's name 'class2' is also class 2's: each class needs a name of its own"),  # fakecifar's names
], ids=["test-label-255", "train-label--1", "11-names", "a-name-twice"])
def test_the_trainer_refuses_a_bad_dataset_file_in_one_line(tmp_path, capsys, name, change, message):
    """Through skengine-train: exit 2 and one line naming the file, before any training (not a traceback after
    epoch 1, nor an 11-class model)."""
    from fakecifar import edit_file, write_cifar
    from trainkit import run_cli, small_argv
    root = edit_file(write_cifar(tmp_path / "data"), name, change)
    code, _, err = run_cli(small_argv(root, tmp_path / "out"), capsys)
    assert code == 2 and err == f"skengine-train: error: {root / 'cifar-10-batches-py' / name}: {message}\n", err
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


# ---------------------------------------------------------------- download.py

def make_archive(tmp_path):
    """A tiny CIFAR-10 archive in the official layout; returns (path, md5)."""
    src = tmp_path / "src"
    write_cifar10(src)
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return path, hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path on a loopback port from a thread; yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def check_roundtrip(root):
    x, y = load_cifar(root, "cifar10")
    assert x.shape == (10, 3, 32, 32) and (x[3, 2] == 3).all() and y.tolist() == [i % 10 for i in range(10)]


def test_download_file_url_roundtrip_and_skip(tmp_path):
    archive, md5 = make_archive(tmp_path)
    root = tmp_path / "cache"
    assert download_and_extract("cifar10", root, url=archive.as_uri(), md5=md5) == str(root)
    check_roundtrip(root)
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temp left
    # already extracted: no download attempted, even from a dead URL
    assert download_and_extract("cifar10", root, url=(tmp_path / "gone").as_uri(), md5=md5) == str(root)


def test_download_http_roundtrip(tmp_path, http_server):
    _, md5 = make_archive(tmp_path)
    root = tmp_path / "cache"
    download_and_extract("cifar10", root, url=f"{http_server}/cifar-10-python.tar.gz", md5=md5)
    check_roundtrip(root)


def test_default_root_from_env(tmp_path, monkeypatch, http_server):
    _, md5 = make_archive(tmp_path)
    monkeypatch.setenv("SKENGINE_DATA", str(tmp_path / "env"))
    assert download_and_extract(url=f"{http_server}/cifar-10-python.tar.gz", md5=md5) == str(tmp_path / "env")
    check_roundtrip(None)


def test_wrong_md5_leaves_nothing(tmp_path, http_server):
    make_archive(tmp_path)
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="MD5 mismatch"):
        download_and_extract("cifar10", root, url=f"{http_server}/cifar-10-python.tar.gz", md5="0" * 32)
    assert os.listdir(root) == []


def test_no_network_message(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="could not download") as e:
        download_and_extract("cifar10", root, url=f"http://127.0.0.1:{port}/x.tar.gz", timeout=5)
    assert str(root / "cifar-10-python.tar.gz") in str(e.value) and os.listdir(root) == []


def tar_with(path, member):
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)


def member(name, kind=tarfile.REGTYPE, link=""):
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize("bad", [
    member("../evil"), member("cifar-10-batches-py/../../evil"), member("/tmp/evil-abs-skengine"),
    member("cifar-10-batches-py/l", tarfile.SYMTYPE, "../../evil"),
    member("cifar-10-batches-py/l", tarfile.SYMTYPE, "/etc/passwd"),
    member("cifar-10-batches-py/h", tarfile.LNKTYPE, "../evil"),
    member("cifar-10-batches-py/dev", tarfile.CHRTYPE),
], ids=lambda m: f"{m.name}->{m.linkname}")
def test_unsafe_members_rejected(tmp_path, bad):
    archive, root = tmp_path / "bad.tar", tmp_path / "a" / "root"
    root.mkdir(parents=True)
    tar_with(archive, bad)
    with pytest.raises(ValueError, match="unsafe archive member"):
        safe_extract(archive, root, "cifar-10-batches-py")
    assert os.listdir(root) == [] and not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not os.path.exists("/tmp/evil-abs-skengine")


def test_malicious_archive_through_download(tmp_path):
    archive = tmp_path / "evil.tar"
    tar_with(archive, member("../evil"))
    root = tmp_path / "cache"
    with pytest.raises(ValueError):
        download_and_extract("cifar10", root, url=archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest())
    assert not (tmp_path / "evil").exists() and not (root / "cifar-10-batches-py").exists()


@pytest.mark.parametrize("target", ["other", "."])
def test_archive_whose_dataset_folder_is_a_symlink_is_refused(tmp_path, target):
    archive, root = tmp_path / "link.tar", tmp_path / "root"
    root.mkdir()
    with tarfile.open(archive, "w") as tar:
        tar.addfile(member("other", tarfile.DIRTYPE))
        tar.addfile(member("other/data_batch_1"), io.BytesIO(b"x"))
        tar.addfile(member("cifar-10-batches-py", tarfile.SYMTYPE, target))
    with pytest.raises(ValueError, match=r"unsafe archive member 'cifar-10-batches-py' .*a symlink"):
        safe_extract(archive, root, "cifar-10-batches-py")
    assert os.listdir(root) == []


@pytest.mark.parametrize("kind", ["dangling", "file"])
def test_existing_symlink_at_the_destination_is_left_alone(tmp_path, kind):
    archive, md5 = make_archive(tmp_path)
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    root.mkdir()
    if kind == "file":
        elsewhere.write_bytes(b"mine")
    (root / "cifar-10-batches-py").symlink_to(elsewhere)
    dest = root / "cifar-10-batches-py"
    with pytest.raises(FileExistsError, match=re.escape(str(dest)) + r" already exists \(a symlink"):
        download_and_extract("cifar10", root, url=archive.as_uri(), md5=md5)
    assert os.readlink(root / "cifar-10-batches-py") == str(elsewhere)
    assert (elsewhere.read_bytes() == b"mine") if kind == "file" else not os.path.lexists(elsewhere)
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temp left


# ---------------------------------------------------------------- loader.py

def images_by_index(n, h=6, w=5):
    """uint8 images whose pixels are all distinct within an image (and 1..255, never 0)."""
    return (1 + (np.arange(n * 3 * h * w) % 251)).astype(np.uint8).reshape(n, 3, h, w)


def test_crop_flip_matches_per_sample_crop():
    x = images_by_index(4)
    pad = 2
    oy, ox, flip = np.array([0, 4, 2, 1]), np.array([4, 0, 2, 3]), np.array([False, True, False, True])
    out = crop_flip(x, oy, ox, flip, pad)
    for i in range(4):
        p = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)))  # zero padding
        ref = p[:, oy[i]:oy[i] + 6, ox[i]:ox[i] + 5]
        np.testing.assert_array_equal(out[i], ref[:, :, ::-1] if flip[i] else ref)
    # sample 0 at (0, 4): two rows of padding on top, two columns on the right
    assert (out[0, :, :2] == 0).all() and (out[0, :, :, 3:] == 0).all() and (out[0, :, 2:, :3] != 0).all()
    centre = np.full(4, pad)
    np.testing.assert_array_equal(crop_flip(x, centre, centre, np.zeros(4, bool), pad), x)
    flipped = crop_flip(x, centre, centre, np.ones(4, bool), pad)
    np.testing.assert_array_equal(flipped, x[..., ::-1])
    np.testing.assert_array_equal(crop_flip(flipped, centre, centre, np.ones(4, bool), pad), x)


def test_cutout_square():
    x = np.ones((2, 1, 5, 5), np.float32)
    out = cutout(x, np.array([0, 2]), np.array([0, 3]), 2)
    assert out[0, 0, 0, 0] == 0 and out[0].sum() == 24  # square rows/cols [-1, 1): clipped to one pixel
    assert (out[1, 0, 1:3, 2:4] == 0).all() and out[1].sum() == 21


def test_normalisation_values():
    x = np.zeros((1, 3, 2, 2), np.uint8)
    x[0, 0] = 255
    x[0, 1, 0, 0] = 51
    mean, std = CIFAR_MEAN_STD["cifar10"]
    assert mean == (0.4914, 0.4822, 0.4465) and std == (0.2470, 0.2435, 0.2616)
    out, y = next(iter(DataLoader(x, [7], 1, mean=mean, std=std)))
    assert out.dtype == np.float32 and y.dtype == np.int64 and y.tolist() == [7]
    np.testing.assert_allclose(out[0, 0], (1 - 0.4914) / 0.2470, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 0, 0], (0.2 - 0.4822) / 0.2435, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 1, 1], -0.4822 / 0.2435, rtol=1e-6)
    np.testing.assert_allclose(out[0, 2], -0.4465 / 0.2616, rtol=1e-6)
    plain, _ = next(iter(DataLoader(x, [7], 1)))  # no mean/std: just scaled to [0, 1]
    assert plain[0, 0, 0, 0] == 1 and plain[0, 2].max() == 0
    np.testing.assert_allclose(plain[0, 1, 0, 0], 0.2, rtol=1e-6)


@pytest.mark.parametrize("drop_last,sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_partial_last_batch(drop_last, sizes):
    loader = DataLoader(images_by_index(10), np.arange(10), 4, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = list(loader)
    assert [len(y) for _, y in batches] == sizes
    assert np.concatenate([y for _, y in batches]).tolist() == list(range(sum(sizes)))  # no shuffle: in order


def collect(loader, epochs=1):
    return [(x.copy(), y.copy()) for _ in range(epochs) for x, y in loader]


def test_shuffle_is_seeded_and_covers_each_sample_once():
    x, labels = images_by_index(11), np.arange(11)
    a = collect(DataLoader(x, labels, 3, shuffle=True, augment=True, cutout=2, seed=5), 2)
    b = collect(DataLoader(x, labels, 3, shuffle=True, augment=True, cutout=2, seed=5), 2)
    c = collect(DataLoader(x, labels, 3, shuffle=True, augment=True, cutout=2, seed=6), 2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    epoch0, epoch1 = [np.concatenate([y for _, y in a[e * 4:(e + 1) * 4]]) for e in (0, 1)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(11))
    assert epoch0.tolist() != epoch1.tolist() and epoch0.tolist() != list(range(11))
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_augmented_samples_are_crops_or_flips_of_their_source():
    n, pad = 64, 2
    x = images_by_index(n)
    loader = DataLoader(x, np.arange(n), 16, shuffle=True, augment=True, pad=pad, seed=1)
    seen = set()
    for out, y in loader:
        raw = np.rint(out * 255).astype(np.uint8)  # mean 0, std 1: undo the /255
        for img, i in zip(raw, y):
            p = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)))
            hits = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (0, 1)
                    if np.array_equal(img, p[:, dy:dy + 6, dx:dx + 5][:, :, ::-1] if f else p[:, dy:dy + 6, dx:dx + 5])]
            assert len(hits) == 1
            seen.add(hits[0])
    assert {f for _, _, f in seen} == {0, 1} and len({(dy, dx) for dy, dx, _ in seen}) > 5


def test_reflect_padding_crops_match_numpy():
    x = images_by_index(4)
    oy, ox, flip = np.array([0, 4, 2, 1]), np.array([4, 0, 2, 3]), np.array([False, True, False, True])
    out = crop_flip(x, oy, ox, flip, 2, pad_mode="reflect")
    for i in range(4):
        ref = np.pad(x[i], ((0, 0), (2, 2), (2, 2)), mode="reflect")[:, oy[i]:oy[i] + 6, ox[i]:ox[i] + 5]
        np.testing.assert_array_equal(out[i], ref[:, :, ::-1] if flip[i] else ref)
    assert (out != 0).all()  # no zeros come in from the border
    with pytest.raises(ValueError, match=r"a reflect pad must be smaller than the images, got pad=5"):
        DataLoader(x, np.arange(4), 2, augment=True, pad=5, pad_mode="reflect")
    with pytest.raises(ValueError, match="pad_mode must be 'constant' or 'reflect', got 'wrap'"):
        DataLoader(x, np.arange(4), 2, pad_mode="wrap")


def flips_seen(loader, x, epochs):
    """{image index: [mirrored in epoch e]} read off the loader's batches (pad 0: the flip is all that changes)."""
    seen = {}
    for _ in range(epochs):
        for out, y in loader:
            for img, i in zip(np.rint(out * 255).astype(np.uint8), y):
                assert np.array_equal(img, x[i]) or np.array_equal(img, x[i][..., ::-1])
                seen.setdefault(int(i), []).append(not np.array_equal(img, x[i]))
    return seen


def test_alternating_flips_show_every_image_both_ways_in_two_epochs():
    n = 200
    x = images_by_index(n)
    seen = flips_seen(DataLoader(x, np.arange(n), 32, shuffle=True, augment=True, pad=0, seed=4, flip="alternate"),
                      x, 4)
    assert all(f == [f[0], not f[0], f[0], not f[0]] for f in seen.values())
    assert 60 < sum(f[0] for f in seen.values()) < 140  # the first epoch's flips are coin tosses
    rand = flips_seen(DataLoader(x, np.arange(n), 32, shuffle=True, augment=True, pad=0, seed=4), x, 2)
    assert sum(f[0] == f[1] for f in rand.values()) > 60  # random flips repeat about half the time
    with pytest.raises(ValueError, match="flip must be 'random' or 'alternate', got 'always'"):
        DataLoader(x, np.arange(n), 2, flip="always")
    # sharded: the shards of every rank together are the whole batch, flips included
    whole = collect(DataLoader(x, np.arange(n), 32, shuffle=True, augment=True, seed=4, flip="alternate"), 2)
    shards = [collect(DataLoader(x, np.arange(n), 32, shuffle=True, augment=True, seed=4, flip="alternate",
                                 num_replicas=2, rank=r), 2) for r in range(2)]
    for (xw, yw), (x0, y0), (x1, y1) in zip(whole, *shards):
        np.testing.assert_array_equal(xw, np.concatenate([x0, x1]))
        np.testing.assert_array_equal(yw, np.concatenate([y0, y1]))


def test_state_dict_resumes_bit_for_bit():
    x, labels = images_by_index(10), np.arange(10)
    make = functools.partial(DataLoader, x, labels, 4, shuffle=True, augment=True, cutout=2, seed=3)
    ref = collect(make(), 3)  # 3 epochs of 3 batches
    loader, got = make(), []
    it = iter(loader)
    for _ in range(2):
        next(it)
    state = loader.state_dict()  # mid-epoch 0, after 2 batches
    assert state == {"seed": 3, "epoch": 0, "batch": 2}
    resumed = make(seed=0)
    resumed.load_state_dict(state)
    got = collect(resumed, 3)  # rest of epoch 0, then epochs 1 and 2
    assert len(got) == 7 and resumed.state_dict() == {"seed": 3, "epoch": 2, "batch": 3}
    for (xa, ya), (xb, yb) in zip(ref[2:], got):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        DataLoader(np.zeros((2, 3, 4, 4), np.float32), [0, 1], 1)
    with pytest.raises(ValueError):
        DataLoader(np.zeros((2, 3, 4, 4), np.uint8), [0], 1)


def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception:
        pytest.skip("no CUDA device")
    x, labels = images_by_index(9), np.arange(9)
    kw = dict(batch_size=4, shuffle=True, augment=True, cutout=2, seed=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    for (xa, ya), (xb, yb) in zip(collect(DataLoader(x, labels, **kw)), collect(DataLoader(x, labels, xp=cp, **kw))):
        assert isinstance(xb, cp.ndarray) and xb.dtype == cp.float32 and yb.dtype == cp.int64
        np.testing.assert_allclose(xa, cp.asnumpy(xb), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ya, cp.asnumpy(yb))
