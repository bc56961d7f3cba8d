"""Convolution by Winograd's minimal filtering F(4, 3) along the width (Lavin & Gray, arXiv 1509.09308, in 1-D).

Four neighbouring outputs of a row under a kernel row three taps wide take 6 products instead of 12, after a
transform of the six inputs d they read and of the kernel row w:

    (y0, y1, y2, y3) = A^T [(G w) * (B^T d)]        (BT, G and AT below: interpolation at 0, +-1, +-2, infinity)

Summed over input channels and kernel rows, each of the 6 components k is a matmul: (B^T d)_k of every tile of
four outputs against (G w)_k, K = C*kh.  im2col's one matmul has K = C*kh*3 over every output, so the products
halve; the transforms (one matmul each with B^T and A^T over the whole chunk, and the copies that gather the
tiles' inputs and scatter their outputs) take the im2col copy's place.  The weight gradient is the transpose of
the same map,

    dw = G^T [sum over tiles of (A gy) * (B^T d)],

6 matmuls with the tiles as K, then G^T over the small (O, C*kh) results.  F(2, 3) (4 products for 2 outputs,
entries 0, +-1, +-1/2) gained 1.04-1.12x over im2col on the fast network's 15 and 7 px layers; F(4, 3) 1.22-1.33x
(benchmarks/RESULTS.md).  Its entries (up to 8, and 1/6, 1/24) cost float32 about four times F(2, 3)'s rounding
error, 3e-6 of the largest output against 7e-7 (checked against the im2col engine in the tests).

A width dilated by dw is dw undilated rows side by side (outputs p, p + dw, ... read only columns p + dw*k), so
the gather takes each phase's tiles apart and nothing else changes: the SK unit's dilated 7 px path gains 1.37x
over the rectangles of ``regions.py``, its 15 px one about 1.02x over im2col.

Used on the CPU for what it speeds up: no groups, a kernel three wide, stride 1, enough channels in and out, rows
of enough outputs (``applies``, which ``convolution.py`` asks first); everything here takes and returns NumPy
arrays.
"""
import numpy as np

from .im2col import FLOATS, conv_output_size

CHUNK_BYTES = 2 << 20  # the transformed columns of one chunk of images
MIN_CHANNELS = 16      # fewer input or output channels make the matmuls too thin to gain (24 -> 64 gains)
MIN_WIDTH = 6          # narrower outputs leave too little to gain on each row's tiles

# F(4, 3): 4 outputs of a row from 6 inputs, interpolating at 0, 1, -1, 2, -2 and infinity (Lavin & Gray, sec. 4.1)
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)


def applies(x, w, stride, padding, dilation, groups):
    """Whether conv(x, w) goes through here: NumPy, no groups, kernel width 3, stride 1, at least MIN_CHANNELS
    input and output channels and an output at least MIN_WIDTH wide."""
    return (type(x) is np.ndarray and type(w) is np.ndarray and x.dtype == w.dtype and x.dtype in FLOATS
            and groups == 1
            and w.shape[3] == 3 and tuple(stride) == (1, 1) and min(x.shape[1], w.shape[0]) >= MIN_CHANNELS
            and conv_output_size(x.shape[3], 3, 1, padding[1], dilation[1]) >= MIN_WIDTH
            and conv_output_size(x.shape[2], w.shape[2], 1, padding[0], dilation[0]) >= 1)


def conv(x, w, padding, dilation, other=None, need_y=True):
    """(y = conv(x, w) or None when not ``need_y``, the weight gradient (O, C, kh, 3) for the output gradient
    ``other`` (shaped like y) or None).  x (N, C, H, W), w (O, C, kh, 3), stride 1.

    Chunk by chunk of images: the zero-padded images, the n inputs of every tile gathered (n, C, m, Hp, T) and
    transformed by one matmul with B^T, the columns of each kernel row i (the transformed rows i*dh on: one
    contiguous run an image), n matmuls, and the output transform (one matmul with A^T) written into y.  A width
    dilated by dw is dw undilated rows side by side: the outputs p, p + dw, p + 2*dw, ... (p < dw) read only the
    columns p + dw*k, so phase p has tiles of its own, T / dw of them.
    """
    (N, C, H, W), (O, _, kh, _) = x.shape, w.shape
    (n, r), (ph, pw), (dh, dw) = AT.shape[::-1], padding, dilation  # a tile: n inputs, r outputs
    OH, OW = conv_output_size(H, kh, 1, ph, dh), conv_output_size(W, 3, 1, pw, dw)
    Tp = -(-OW // (dw * r))  # tiles a row of one phase: ceil(ceil(OW / dw) / r)
    T = dw * Tp  # tiles a row: phase p's are p*Tp .. (p+1)*Tp - 1
    Hp, L = H + 2 * ph, OH * T  # L: one image's tiles
    dt = x.dtype
    bt, at = BT.astype(dt), AT.astype(dt)
    ut = np.einsum("kj,ocij->kcio", G.astype(dt), w).reshape(n, C * kh, O)  # (G w)_k, rows (c, i) as the columns'
    b = max(1, min(N, CHUNK_BYTES // (n * C * kh * L * x.itemsize)))
    y = np.empty((N, O, OH, OW), dt) if need_y else None
    gw = None if other is None else np.zeros((n, O, C * kh), dt)
    # output q of phase p's tile t is column p + dw*(r*t + q): (p, q, its slice of y's columns, how many)
    outputs = [(p, q, slice(p + dw * q, None, dw * r), len(range(p + dw * q, OW, dw * r)))
               for p in range(dw) for q in range(r)]
    bufs = {}
    for n0 in range(0, N, b):
        n1 = min(N, n0 + b)
        m = n1 - n0
        if m not in bufs:  # zeroed once: the padding and the missing outputs of a row's last tile stay zero
            bufs[m] = (np.zeros((m, C, Hp, dw * (r * Tp + 2)), dt), np.empty((n, C, m, Hp, T), dt),
                       np.empty((n, C, m, Hp * T), dt), np.empty((n, C, kh, m, L), dt),
                       np.empty((n, m * L, O), dt) if need_y else None,
                       np.empty((r, m * L * O), dt) if need_y else None,
                       None if other is None else (np.zeros((r, O, m, OH, T), dt), np.empty((n, O * m * L), dt)))
        xpad, d, v, cols, prod, out, grad = bufs[m]
        xpad[:, :, ph:ph + H, pw:pw + W] = x[n0:n1]
        for j in range(n):  # input j of phase p's tile t: column p + dw*(r*t + j)
            for p in range(dw):
                d[j][..., p * Tp:(p + 1) * Tp] = xpad[:, :, :, p + dw * j::dw * r][..., :Tp].transpose(1, 0, 2, 3)
        np.matmul(bt, d.reshape(n, -1), out=v.reshape(n, -1))  # B^T d
        for i in range(kh):
            cols[:, :, i] = v[..., i * dh * T:i * dh * T + L]
        cf = cols.reshape(n, C * kh, m * L)
        if need_y:
            np.matmul(cf.swapaxes(1, 2), ut, out=prod)
            np.matmul(at, prod.reshape(n, -1), out=out)  # A^T m
            o, yt = out.reshape(r, m, OH, T, O), y[n0:n1].transpose(0, 2, 3, 1)  # yt: the products' layout
            for p, q, columns, count in outputs:
                yt[:, :, columns] = o[q][:, :, p * Tp:p * Tp + count]
        if other is not None:
            gt, ag = grad
            g = other[n0:n1].transpose(1, 0, 2, 3)  # (O, m, OH, OW)
            for p, q, columns, count in outputs:
                gt[q][..., p * Tp:p * Tp + count] = g[..., columns]
            np.matmul(at.T, gt.reshape(r, -1), out=ag)  # A gy
            gw += ag.reshape(n, O, m * L) @ cf.swapaxes(1, 2)
    if gw is not None:
        gw = np.einsum("kj,koq->oqj", G.astype(dt), gw).reshape(O, C, kh, 3)
    return y, gw


__all__ = ["applies", "conv", "AT", "BT", "G", "CHUNK_BYTES", "MIN_CHANNELS", "MIN_WIDTH"]
