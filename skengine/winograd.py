"""Convolution by Winograd's minimal filtering F(2, 3) along the width (Lavin & Gray, arXiv 1509.09308, in 1-D).

Two neighbouring outputs of a row under a kernel row three taps wide take 4 products instead of 6, after a
transform of the four inputs d they read and of the kernel row w:

    (y0, y1) = A^T [(G w) * (B^T d)]

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

Summed over input channels and kernel rows, each of the 4 components k is a matmul: (B^T d)_k of every pair of
outputs (a "tile") against (G w)_k, K = C*kh.  im2col's one matmul has K = C*kh*3 over every output, so the
products shrink by a third; the transforms, adds over the input and the output, take the im2col copy's place
(on a 15 px map they cost about half what the matmuls save).  The weight gradient is the transpose of the same map,

    dw = G^T [sum over tiles of (A gy) * (B^T d)],

4 matmuls with the tiles as K, then G^T over the small (O, C*kh) results.  The transforms' entries are 0, +-1
and +-1/2, so float32 loses nothing to speak of (checked against the im2col engine in the tests).

Used on the CPU for what it speeds up (measured in benchmarks/RESULTS.md): no groups, a kernel three wide,
stride 1, no dilation across the width, enough channels in and out, rows of enough outputs (``applies``, which
``convolution.py`` asks); everything here takes and returns NumPy arrays.
"""
import numpy as np

from .im2col import conv_output_size

CHUNK_BYTES = 2 << 20  # the transformed columns of one chunk of images
MIN_CHANNELS = 48      # fewer input or output channels make the matmuls too thin to gain
MIN_WIDTH = 6          # narrower outputs leave too little to gain on each row's tiles

G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])


def applies(x, w, stride, padding, dilation, groups):
    """Whether conv(x, w) goes through here: NumPy, no groups, kernel width 3, stride 1, no dilation across the
    width, at least MIN_CHANNELS input and output channels and an output at least MIN_WIDTH wide.  (A dilated
    row, as R undilated phases, ran at 0.87-0.90x of im2col: its strided transforms cost more than it saves.)"""
    return (type(x) is np.ndarray and type(w) is np.ndarray and x.dtype == w.dtype and groups == 1
            and w.shape[3] == 3 and tuple(stride) == (1, 1) and dilation[1] == 1
            and min(x.shape[1], w.shape[0]) >= MIN_CHANNELS and x.shape[3] + 2 * padding[1] - 2 >= MIN_WIDTH
            and conv_output_size(x.shape[2], w.shape[2], 1, padding[0], dilation[0]) >= 1)


def conv(x, w, padding, dilation_h, other=None, need_y=True):
    """(y = conv(x, w) or None when not ``need_y``, the weight gradient (O, C, kh, 3) for the output gradient
    ``other`` (shaped like y) or None).  x (N, C, H, W), w (O, C, kh, 3), stride 1, dilation (dilation_h, 1).

    Chunk by chunk of images: the zero-padded images, their transformed tiles (4, C, m, Hp, T), the columns of
    each kernel row i (the transformed rows i*dh on: one contiguous run an image), 4 matmuls, and the output
    transform written straight into y.
    """
    (N, C, H, W), (O, _, kh, _) = x.shape, w.shape
    ph, pw = padding
    OH, OW = conv_output_size(H, kh, 1, ph, dilation_h), W + 2 * pw - 2
    T = -(-OW // 2)  # tiles (pairs of outputs) a row
    Hp, L = H + 2 * ph, OH * T  # L: one image's tiles
    dt = x.dtype
    ut = np.einsum("kj,ocij->kcio", G.astype(dt), w).reshape(4, C * kh, O)  # (G w)_k, rows (c, i) as the columns'
    b = max(1, min(N, CHUNK_BYTES // (4 * C * kh * L * x.itemsize)))
    y = np.empty((N, O, OH, OW), dt) if need_y else None
    dw = None if other is None else np.zeros((4, O, C * kh), dt)
    bufs = {}
    for n0 in range(0, N, b):
        n1 = min(N, n0 + b)
        m = n1 - n0
        if m not in bufs:  # zeroed once: the padding and an odd row's missing last output stay zero
            bufs[m] = (np.zeros((m, C, Hp, 2 * T + 2), dt), np.empty((4, C, m, Hp, T), dt),
                       np.empty((4, C, kh, m, L), dt), np.empty((4, m * L, O), dt) if need_y else None,
                       None if other is None else np.zeros((4, O, m, OH, T), dt))
        xpad, v, cols, prod, ag = bufs[m]
        xpad[:, :, ph:ph + H, pw:pw + W] = x[n0:n1]
        d = [xpad[:, :, :, j::2][..., :T].transpose(1, 0, 2, 3) for j in range(4)]  # column 2t + j of tile t
        np.subtract(d[0], d[2], out=v[0])  # B^T d
        np.add(d[1], d[2], out=v[1])
        np.subtract(d[2], d[1], out=v[2])
        np.subtract(d[1], d[3], out=v[3])
        vf = v.reshape(4, C, m, Hp * T)
        for i in range(kh):
            cols[:, :, i] = vf[..., i * dilation_h * T:i * dilation_h * T + L]
        cf = cols.reshape(4, C * kh, m * L)
        if need_y:
            np.matmul(cf.swapaxes(1, 2), ut, out=prod)
            p = prod.reshape(4, m, OH, T, O)
            yt = y[n0:n1].transpose(0, 2, 3, 1)  # (m, OH, OW, O): the layout of the products
            np.add(p[0], p[1], out=p[0])  # A^T m: y0 = m0 + m1 + m2, y1 = m1 - m2 - m3
            np.add(p[0], p[2], out=yt[:, :, 0::2])
            np.subtract(p[1], p[2], out=p[1])
            np.subtract(p[1][:, :, :OW // 2], p[3][:, :, :OW // 2], out=yt[:, :, 1::2])
        if other is not None:
            g = other[n0:n1].transpose(1, 0, 2, 3)  # (O, m, OH, OW)
            ag[0] = g[..., 0::2]  # A gy, with -g1 kept as g1 (its sign goes on the small result)
            ag[3][..., :OW // 2] = g[..., 1::2]
            np.add(ag[0], ag[3], out=ag[1])
            np.subtract(ag[0], ag[3], out=ag[2])
            dw += ag.reshape(4, O, m * L) @ cf.swapaxes(1, 2)
    if dw is not None:
        dw[3] *= -1
        dw = np.einsum("kj,koq->oqj", G.astype(dt), dw).reshape(O, C, kh, 3)
    return y, dw


__all__ = ["applies", "conv", "CHUNK_BYTES", "MIN_CHANNELS", "MIN_WIDTH"]
