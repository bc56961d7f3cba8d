"""Is Winograd F(2x2, 3x3) worth building in NumPy?  A forward-only prototype timed against skengine's im2col
convolution on the 3x3 stride-1 shapes of ``sknet_cifar_fast`` (issue 29), alternating, one BLAS thread.

    OPENBLAS_NUM_THREADS=1 python benchmarks/winograd.py --batch 256

F(2x2, 3x3) (Lavin and Gray, arXiv 1509.09308): each 4x4 input tile (stride 2) becomes V = B^T d B, each filter
U = G g G^T, the products are 16 GEMMs (one per position of the 4x4 transformed tile, O x C by C x tiles), and
each 2x2 output tile is A^T m A: 16 multiplies per 2x2 outputs instead of 36.  The transforms are additions
over strided views, done row-wise then column-wise (separable).  A dilation-2 3x3 is four undilated 3x3s on the
four polyphase sub-images, so the same kernel serves both SK paths.  The prototype is checked against
``convolution.conv2d_forward`` before it is timed.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import machine_report, median, table, time_alternately  # noqa: E402
from skengine.convolution import conv2d_forward  # noqa: E402

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)


def filter_transform(w):
    """U (16, O, C) from w (O, C, 3, 3)."""
    u = np.einsum("ik,ockl,jl->ijoc", G, w, G, optimize=True)
    return np.ascontiguousarray(u.reshape(16, *w.shape[:2]))


def _bt(rows):
    """B^T along the first axis of a list of 4 arrays: (r0 - r2, r1 + r2, r2 - r1, r1 - r3)."""
    r0, r1, r2, r3 = rows
    return r0 - r2, r1 + r2, r2 - r1, r1 - r3


def winograd_forward(x, u, O):
    """y = conv3x3(x, w, padding 1) for x (N, C, H, W), u = filter_transform(w)."""
    N, C, H, W = x.shape
    th, tw = -(-H // 2), -(-W // 2)
    p = np.zeros((C, N, 2 * th + 2, 2 * tw + 2), x.dtype)  # channels first: the GEMM's C x tiles layout
    p[:, :, 1:H + 1, 1:W + 1] = x.transpose(1, 0, 2, 3)
    rows = [p[:, :, i:i + 2 * th:2] for i in range(4)]  # (C, N, th, Wp): row i of every tile
    v = np.empty((16, C, N, th, tw), x.dtype)
    for i, r in enumerate(_bt(rows)):
        cols = [r[..., j:j + 2 * tw:2] for j in range(4)]
        for j, c in enumerate(_bt(cols)):
            v[4 * i + j] = c
    m = np.matmul(u, v.reshape(16, C, -1)).reshape(4, 4, O, N, th, tw)  # (16, O, tiles)
    s = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])  # A^T along the rows
    y = np.empty((O, N, th, 2, tw, 2), x.dtype)
    for a, t in enumerate(s):
        y[:, :, :, a, :, 0] = t[0] + t[1] + t[2]
        y[:, :, :, a, :, 1] = t[1] - t[2] - t[3]
    return y.reshape(O, N, 2 * th, 2 * tw)[:, :, :H, :W].transpose(1, 0, 2, 3)


def winograd_chunked(x, u, O, chunk_bytes=4 << 20):
    """winograd_forward over blocks of images whose transformed tiles and products stay in the cache."""
    N, C, H, W = x.shape
    per_image = 16 * (C + O) * (-(-H // 2)) * (-(-W // 2)) * x.itemsize
    nb = max(1, chunk_bytes // per_image)
    y = np.empty((N, O, H, W), x.dtype)
    for n0 in range(0, N, nb):
        y[n0:n0 + nb] = winograd_forward(x[n0:n0 + nb], u, O)
    return y


def dilated(kernel):
    """conv3x3 dilation 2, padding 2 by ``kernel``: the undilated kernel on each polyphase sub-image."""
    def conv(x, u, O):
        N, C, H, W = x.shape
        y = np.empty((N, O, H, W), x.dtype)
        for a in range(2):
            for b in range(2):
                y[:, :, a::2, b::2] = kernel(np.ascontiguousarray(x[:, :, a::2, b::2]), u, O)
        return y
    return conv


SHAPES = [(24, 64, 31, 1), (64, 64, 15, 1), (64, 64, 15, 2), (64, 128, 15, 1), (128, 128, 7, 1),
          (128, 128, 7, 2), (128, 128, 3, 1)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows, total = [], None
    for C, O, S, d in SHAPES:
        x = rng.standard_normal((args.batch, C, S, S)).astype(np.float32)
        w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
        u = filter_transform(w)
        whole, chunked = ((winograd_forward, winograd_chunked) if d == 1 else
                          (dilated(winograd_forward), dilated(winograd_chunked)))
        ref = conv2d_forward(x, w, (1, 1), (d, d), (d, d), 1)
        err = max(np.abs(f(x, u, O) - ref).max() for f in (whole, chunked)) / np.abs(ref).max()
        assert err < 1e-5, (C, O, S, d, err)
        t = time_alternately({"im2col": lambda: conv2d_forward(x, w, (1, 1), (d, d), (d, d), 1),
                              "whole": lambda: whole(x, u, O), "chunked": lambda: chunked(x, u, O)},
                             repeats=args.repeats)
        ms = [median(t[k]) for k in ("im2col", "whole", "chunked")]
        total = [a + b for a, b in zip(total, ms)] if total else ms
        rows.append([f"{C}->{O}, {S} px" + (", d2" if d == 2 else ""), *(f"{1e3 * v:.1f}" for v in ms),
                     f"{ms[0] / min(ms[1:]):.2f}x", f"{err:.1e}"])
    rows.append(["**total**", *(f"{1e3 * v:.1f}" for v in total), f"{total[0] / min(total[1:]):.2f}x", ""])
    print("\n".join(machine_report([f"forward, batch {args.batch}, median of {args.repeats}"])))
    print(table(rows, ["conv 3x3", "im2col ms", "winograd, whole batch ms", "winograd, 4 MiB chunks ms",
                       "best speed-up", "rel. error"]))


if __name__ == "__main__":
    main()
