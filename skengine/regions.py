"""Convolution region by region: im2col over only the taps that read the image, no padding, no garbage columns.

On a small map most of what a padded im2col multiplies is zeros: a 3x3 kernel dilated by 2 on a 3x3 map reads
the image with 25 of its 81 tap-output pairs, and the flat columns (``im2col.py``) add P - OW garbage outputs a
row on top.  Here the outputs are cut into rectangles over which the same kernel taps read the image: along
each axis the outputs fall into runs ("bands") whose live taps are one range i0..i1 (the first rows miss the
taps above the image, the last the taps below it, a middle run has them all).  Each rectangle is one matmul over
a chunk of images, with K = C times its live taps, so every product multiplies pixels of the image:

    y[:, :, rows, cols] = w[:, :, i0:i1, j0:j1] (*) x   (one matmul a rectangle)

The columns of a rectangle are a strided view of the unpadded input (``as_strided``, each element inside the
image by construction), copied once into a buffer laid out (C, taps, images, pixels).  Given ``other`` (shaped
like y), the same columns also give the weight gradient of <conv(x, w), other>: each rectangle adds
columns @ other[rectangle] into its taps of it.  ``convolution.py`` uses this forward and, as it does the
other kernels, for the transposed backward of a stride-1 convolution (dX and dW from one set of columns).

Stride 1, no groups, NumPy arrays (``applies``); measured in benchmarks/RESULTS.md.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .im2col import FLOATS, conv_output_size, flat_geometry

CHUNK_BYTES = 2 << 20  # the columns of one rectangle for one chunk of images
USEFUL_BELOW = 0.55    # taken where under this fraction of the flat products multiply the image (3 px maps)


def bands(size, k, padding, dilation):
    """[(o0, o1, i0, i1)]: the runs of outputs o0..o1-1 along one axis whose taps that read the image are
    i0..i1-1 (output o, tap i reads o - padding + i*dilation); a run that reads nothing is left out."""
    out, runs = conv_output_size(size, k, 1, padding, dilation), []
    for o in range(out):
        i0 = max(0, -(-(padding - o) // dilation))
        i1 = min(k, (size - 1 + padding - o) // dilation + 1)
        if i1 <= i0:
            continue
        if runs and runs[-1][1] == o and runs[-1][2:] == (i0, i1):
            runs[-1] = (runs[-1][0], o + 1, i0, i1)
        else:
            runs.append((o, o + 1, i0, i1))
    return runs


def useful(shape, kernel, padding, dilation):
    """The fraction of the flat columns' products (outputs with their row pitch, every tap) that multiply a
    pixel of the image: what this module saves where it is small."""
    (H, W), (kh, kw), (ph, pw), (dh, dw) = shape, kernel, padding, dilation
    OH, OW = (conv_output_size(s, k, 1, p, d) for s, k, p, d in zip(shape, kernel, padding, dilation))
    live = [sum((o1 - o0) * (i1 - i0) for o0, o1, i0, i1 in bands(*a)) for a in ((H, kh, ph, dh), (W, kw, pw, dw))]
    pitch = flat_geometry(shape, kernel, (1, 1), padding, dilation).pitch
    return live[0] * live[1] / (OH * kh * pitch * kw) if OH > 0 and OW > 0 else 1.0


def applies(x, w, stride, padding, dilation, groups):
    """Whether conv(x, w) goes through here: NumPy, no groups, stride 1, and under USEFUL_BELOW of the flat
    columns' products multiply the image (``useful``)."""
    return (type(x) is np.ndarray and type(w) is np.ndarray and x.dtype == w.dtype and x.dtype in FLOATS
            and groups == 1
            and tuple(stride) == (1, 1)
            and useful(x.shape[2:], w.shape[2:], padding, dilation) < USEFUL_BELOW)


def conv(x, w, padding, dilation, other=None, need_y=True):
    """(y = conv(x, w) or None when not ``need_y``, and given ``other`` shaped like y the weight gradient of
    <conv(x, w), other>, (O, C, kh, kw), else None).  x (N, C, H, W), w (O, C, kh, kw), stride 1, no groups."""
    (N, C, H, W), (O, _, kh, kw) = x.shape, w.shape
    (ph, pw), (dh, dw) = padding, dilation
    OH, OW = conv_output_size(H, kh, 1, ph, dh), conv_output_size(W, kw, 1, pw, dw)
    dt, (sn, sc, sh, sw) = x.dtype, x.strides
    rects = [(r, c) for r in bands(H, kh, ph, dh) for c in bands(W, kw, pw, dw)]
    y = None
    if need_y:  # outputs no tap reaches (a padding wider than the kernel's reach) are zero
        y = np.empty((N, O, OH, OW), dt) if sum((r[1] - r[0]) * (c[1] - c[0]) for r, c in rects) == OH * OW \
            else np.zeros((N, O, OH, OW), dt)
    wt = w.transpose(1, 2, 3, 0)  # (C, kh, kw, O): a rectangle's weights are its taps' block, made once
    blocks = {taps: wt[:, taps[0]:taps[1], taps[2]:taps[3]].reshape(-1, O)
              for taps in {(i0, i1, j0, j1) for (_, _, i0, i1), (_, _, j0, j1) in rects}} if need_y else None
    gk = None if other is None else np.zeros((C, kh, kw, O), dt)
    per_image = max((C * (i1 - i0) * (j1 - j0) * (o1 - o0) * (p1 - p0) * x.itemsize
                     for (o0, o1, i0, i1), (p0, p1, j0, j1) in rects), default=1)
    b = max(1, min(N, CHUNK_BYTES // per_image))
    bufs = {}
    for n0 in range(0, N, b):
        m = min(N, n0 + b) - n0
        for (o0, o1, i0, i1), (p0, p1, j0, j1) in rects:
            rh, rw, th, tw = o1 - o0, p1 - p0, i1 - i0, j1 - j0
            key = (m, rh, rw, th, tw)
            if key not in bufs:
                bufs[key] = (np.empty((C, th, tw, m, rh, rw), dt), np.empty((m * rh * rw, O), dt),
                             np.empty((m, rh, rw, O), dt))
            cols, prod, oth = bufs[key]
            start = x[n0, 0, o0 - ph + i0 * dh, p0 - pw + j0 * dw:]  # a view, so the strides below start here
            cols[...] = as_strided(start, (C, th, tw, m, rh, rw), (sc, sh * dh, sw * dw, sn, sh, sw))
            cf = cols.reshape(C * th * tw, m * rh * rw)
            if need_y:
                np.matmul(cf.T, blocks[i0, i1, j0, j1], out=prod)
                y[n0:n0 + m, :, o0:o1, p0:p1] = prod.reshape(m, rh, rw, O).transpose(0, 3, 1, 2)
            if other is not None:
                oth[...] = other[n0:n0 + m, :, o0:o1, p0:p1].transpose(0, 2, 3, 1)
                gk[:, i0:i1, j0:j1] += (cf @ oth.reshape(m * rh * rw, O)).reshape(C, th, tw, O)
    return y, None if gk is None else gk.transpose(3, 0, 1, 2)


__all__ = ["applies", "bands", "conv", "useful", "CHUNK_BYTES", "USEFUL_BELOW"]
