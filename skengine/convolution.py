"""Grouped, strided, dilated 2-D convolution on raw arrays: the engine under ``F.conv2d``.

Flat im2col (``im2col.py``) and one matmul per group, chunk by chunk.  The
batch goes through in blocks of images x groups small enough that a block's
column buffer (C/G*kh*kw*OH*P values per image and group) stays in cache
(``CHUNK_BYTES``); on the GPU the whole batch is one block.  Nothing bigger
than the input is needed for backward: the columns are rebuilt.

Backward of a stride-1 convolution is itself a stride-1 convolution: dX is
gy, padded by d*(k-1) - p, correlated with the flipped, transposed weights;
and the columns of that padded gy also give dW, as cols @ x^T.  So backward
builds one column buffer, like forward.  Other strides take the columns of x
for dW and scatter the column gradient back (col2im).  A 1x1 convolution
without padding needs no columns at all.  On the CPU, a 3x3 stride-1 convolution
over enough channels and pixels goes through Winograd's F(4, 3) along the width
instead (``winograd.py``): half the products, forward and backward; one on a
small map, where the padded columns would multiply mostly zeros, goes rectangle
by rectangle over the taps that read the image (``regions.py``).

Everything here takes and returns arrays (NumPy or CuPy); the autograd
Function is ``functional.conv.Conv2d``.  The tuning constants below were
measured on the CPU (benchmarks/history/2026-11-25-conv-kernels-zen1.md).
"""
import numpy as np

from . import regions, winograd
from .backend import get_array_module
from .im2col import col2im_flat, conv_output_size, flat_geometry, im2col_flat, pad_phases, tap_range, unpad_phases
from .parallel import run_blocks

CHUNK_BYTES = 2 << 20   # the CPU column buffer per chunk
MIN_WIDTH = 512         # a chunk of fewer groups spans images until its matmul is this wide
TRANSPOSE_FROM = 16     # from this many outputs per group on, the matmul is formed transposed
PARALLEL_BELOW = 8192   # per-group matmuls with fewer weights (O/G * C/G*kh*kw) run one block per core
BATCH_1X1_UP_TO = 64    # a 1x1 conv with at most this many output pixels an image: one matmul over the batch
KERNELS = (winograd, regions)  # asked in turn, then the flat columns: Winograd's wide rows, regions' small maps


def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y = conv(x, w): x (N, C, H, W), w (O, C/groups, kh, kw), all geometry as pairs."""
    if x.size == 0 or w.size == 0:  # no images, or no channels in or out: sums over nothing
        out = [conv_output_size(*a) for a in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)]
        return get_array_module(x).zeros((x.shape[0], w.shape[0], *out), x.dtype)
    tap = _only_live_tap(x, w, stride, padding, dilation)
    if tap is not None:
        return _forward_1x1(x, w[:, :, tap[0]:tap[0] + 1, tap[1]:tap[1] + 1], stride, groups)
    for kernel in KERNELS:
        if kernel.applies(x, w, stride, padding, dilation, groups):
            return kernel.conv(x, w, padding, dilation)[0]
    return _flat_conv(x, w, stride, padding, dilation, groups)[0]


def conv2d_backward(x, w, gy, stride, padding, dilation, groups, need=(True, True)):
    """(dx, dw) of conv2d_forward for the upstream gradient gy.

    need: which of the two to compute; the other comes back as None and costs nothing (the first convolution
    after a frozen layer needs only dw).
    """
    (kh, kw), (ph, pw), (dh, dw) = w.shape[2:], padding, dilation
    xp = get_array_module(x)
    if not any(need):
        return None, None
    if x.size == 0 or w.size == 0:
        return xp.zeros_like(x) if need[0] else None, xp.zeros_like(w) if need[1] else None
    tap = _only_live_tap(x, w, stride, padding, dilation)
    if tap is not None:  # a 1x1 convolution; any other taps read only padding, so their gradient is zero
        gx, gw_tap = _backward_1x1(x, w[:, :, tap[0]:tap[0] + 1, tap[1]:tap[1] + 1], gy, stride, groups, need)
        gw = gw_tap
        if gw_tap is not None and (kh, kw) != (1, 1):
            gw = xp.zeros((groups, w.shape[0] // groups, w.shape[1], kh, kw), w.dtype)
            gw[..., tap[0], tap[1]] = gw_tap
    elif stride == (1, 1) and ph <= dh * (kh - 1) and pw <= dw * (kw - 1):
        gx, gw = _backward_transposed(x, w, gy, padding, dilation, groups, need)
    else:
        gx, gw = _backward_col2im(x, w, gy, stride, padding, dilation, groups, need)
    return gx, None if gw is None else gw.reshape(w.shape)


def _only_live_tap(x, w, stride, padding, dilation):
    """(i, j) when that kernel tap is the only one that reads the image at all and it reads position
    o*stride for output o: then the convolution is the 1x1 convolution with that tap's weights.  So it is
    for every 1x1 kernel without padding, and for a 3x3 on a 1x1 map or a dilated 3x3 on a 2x2 one, whose
    other taps read padding only.  Else None."""
    tap = []
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation):
        out = conv_output_size(size, k, s, p, d)
        live = [i for i in range(k) if (r := tap_range(i * d, s, p, size, out))[1] > r[0]]  # reads some pixel
        if len(live) != 1 or live[0] * d != p or out != -(-size // s):
            return None
        tap.append(live[0])
    return tuple(tap)


# -- 1x1, no padding: the (strided) input is the column matrix ----------------
def _strided_input(x, stride, groups):
    """The (strided) input as (N, G, C/G, OH*OW): the column matrix of each image and group."""
    xs = x if tuple(stride) == (1, 1) else x[:, :, ::stride[0], ::stride[1]]
    N, C, OH, OW = xs.shape
    return xs.reshape(N, groups, C // groups, OH * OW), (OH, OW)


def _forward_1x1(x, w, stride, groups):
    xs, (OH, OW) = _strided_input(x, stride, groups)
    N, G, Cg, L = xs.shape
    wg = w.reshape(G, -1, Cg)
    if L > BATCH_1X1_UP_TO:  # one matmul per image and group, wide enough
        return (wg @ xs).reshape(N, -1, OH, OW)
    y = wg @ xs.transpose(1, 2, 0, 3).reshape(G, Cg, N * L)  # few pixels: one matmul over the whole batch
    return y.reshape(-1, N, OH, OW).transpose(1, 0, 2, 3).copy()


def _backward_1x1(x, w, gy, stride, groups, need):
    xp = get_array_module(gy)
    xs, (OH, OW) = _strided_input(x, stride, groups)
    N, G, Cg, L = xs.shape
    wt = w.reshape(G, -1, Cg).swapaxes(1, 2)
    gy = gy.reshape(N, G, -1, L)
    gw = gxs = None
    if L > BATCH_1X1_UP_TO and xp is np:  # per image; dW summed image by image (no N x O x C intermediate)
        if need[1]:
            gw = xp.zeros((G, gy.shape[2], Cg), w.dtype)
            for n in range(N):
                gw += gy[n] @ xs[n].swapaxes(1, 2)
        if need[0]:
            gxs = (wt @ gy).reshape(N, -1, OH, OW)
    else:  # few pixels (or the GPU, where a loop is N launches): each product one matmul over the batch
        gyc = gy.transpose(1, 2, 0, 3).reshape(G, -1, N * L)
        if need[1]:
            gw = gyc @ xs.transpose(1, 0, 3, 2).reshape(G, N * L, Cg)
        if need[0]:
            gxs = (wt @ gyc).reshape(-1, N, OH, OW).transpose(1, 0, 2, 3).copy()
    if gxs is None or tuple(stride) == (1, 1):
        return gxs, gw
    gx = xp.zeros_like(x)
    gx[:, :, ::stride[0], ::stride[1]] = gxs
    return gx, gw


# -- the flat-column convolution, chunk by chunk ------------------------------
def chunks(xp, N, G, unit_bytes, M, chunk_bytes=None):
    """((n0, n1), (g0, g1)) blocks of images x groups whose columns take about ``chunk_bytes``
    (default CHUNK_BYTES).

    unit_bytes: the columns of one group of one image; M: their row length.
    Enough images for each matmul to be MIN_WIDTH wide, then as many groups as
    fit (a divisor of G), then, with all groups in, more images.
    """
    if N == 0 or xp is not np:
        return [((0, N), (0, G))] if N else []
    units = max(1, (CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // unit_bytes)  # (image, group) pairs
    nb = min(N, units, -(-MIN_WIDTH // M))
    gb = max(d for d in range(1, G + 1) if G % d == 0 and d * nb <= units)
    if gb == G:
        nb = max(nb, min(N, units // G))
    return [((n0, min(N, n0 + nb)), (g0, g0 + gb)) for n0 in range(0, N, nb) for g0 in range(0, G, gb)]


def _parallel(rows, cols):
    """Whether a (rows x cols) weight matrix per group makes matmuls too small to split over threads,
    so that whole blocks go to the cores instead."""
    return rows * cols < PARALLEL_BELOW


def _flat_conv(x, w, stride, padding, dilation, groups, other=None, need_y=True):
    """y = conv(x, w), and, given ``other`` shaped like y, also cols @ other^T per group.

    Returns (y or None when not ``need_y``, that product (G, C/G*kh*kw, O/G) or None).  Work buffers are
    zeroed once per chunk shape: pad_phases and im2col_flat never write the
    padding or the columns' tail, so those stay zero, and the garbage columns
    of ``other``'s wide copy stay zero too.
    """
    xp = get_array_module(x)
    (N, C), (O, _, kh, kw), G = x.shape[:2], w.shape, groups
    Cg, Og, Ob = C // G, O // G, (0 if other is None else other.shape[1] // G)
    g = flat_geometry(x.shape[2:], (kh, kw), stride, padding, dilation)
    (OH, OW), P, T, S = g.out_size, g.pitch, kh * kw, stride[0] * stride[1]
    M = OH * P  # a column row: the output grid including its garbage columns
    wg = w.reshape(G, Og, -1)
    # BLAS runs faster with the short side of the product last: with many
    # outputs per group, form it transposed, (groups, m*M, O/G)
    transposed = Og >= TRANSPOSE_FROM
    y = xp.empty((N, O, OH, OW), x.dtype) if need_y else None

    def work(blocks):  # one worker's blocks, with its own buffers and its own part of prod
        prod = None if other is None else xp.zeros((G, Cg * T, Ob), x.dtype)
        bufs = {}
        for (n0, n1), (g0, g1) in blocks:
            m, gb = n1 - n0, g1 - g0
            if (m, gb) not in bufs:
                bufs[m, gb] = (xp.zeros((m, gb * Cg, S, g.phase_len), x.dtype),
                               xp.zeros((gb * Cg, T, m, M), x.dtype),
                               xp.empty(((gb, m * M, Og) if transposed else (gb, Og, m * M)) if need_y else 0, x.dtype),
                               None if other is None else xp.zeros((gb * Ob, m, OH, P), x.dtype))
            xph, col, yw, ow = bufs[m, gb]
            cols = im2col_flat(pad_phases(x[n0:n1, g0 * Cg:g1 * Cg], g, xph), g, col).reshape(gb, -1, m * M)
            if need_y:
                if transposed:
                    xp.matmul(cols.swapaxes(1, 2), wg[g0:g1].swapaxes(1, 2), out=yw)
                    yw = yw.reshape(gb, m, OH, P, Og).transpose(1, 0, 4, 2, 3)
                else:
                    xp.matmul(wg[g0:g1], cols, out=yw)
                    yw = yw.reshape(gb, Og, m, OH, P).transpose(2, 0, 1, 3, 4)
                y[n0:n1, g0 * Og:g1 * Og].reshape(m, gb, Og, OH, OW)[...] = yw[..., :OW]
            if other is not None:
                ow[..., :OW] = other[n0:n1, g0 * Ob:g1 * Ob].swapaxes(0, 1)
                prod[g0:g1] += cols @ ow.reshape(gb, Ob, m * M).swapaxes(1, 2)
        return prod

    prods = run_blocks(work, chunks(xp, N, G, Cg * T * M * x.itemsize, M), _parallel(Og, Cg * T))
    return y, (None if other is None else sum(prods[1:], prods[0]))


def _backward_transposed(x, w, gy, padding, dilation, groups, need):
    """Stride 1: dX = conv(gy, flipped w^T, padding d*(k-1) - p); dW from the same columns."""
    (O, Cg, kh, kw), G, C = w.shape, groups, x.shape[1]
    T, Og = kh * kw, O // G
    (ph, pw), (dh, dw) = padding, dilation
    # wt[g*Cg + c, o, tap] = w[g*Og + o, c, T-1-tap]
    wt = w.reshape(G, Og, Cg, T)[..., ::-1].swapaxes(1, 2).reshape(C, Og, kh, kw)
    pad = (dh * (kh - 1) - ph, dw * (kw - 1) - pw)
    for kernel in KERNELS:  # dwt[c, o, i, j] = dW[o, c, kh-1-i, kw-1-j]
        if kernel.applies(gy, wt, (1, 1), pad, dilation, G):
            gx, dwt = kernel.conv(gy, wt, pad, dilation, other=x if need[1] else None, need_y=need[0])
            return gx, None if dwt is None else dwt.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    gx, gwt = _flat_conv(gy, wt, (1, 1), pad, dilation, G, other=x if need[1] else None, need_y=need[0])
    # gwt[g, o*T + tap, c] = dW[g*Og + o, c, T-1-tap]
    return gx, None if gwt is None else gwt.reshape(G, Og, T, Cg)[:, :, ::-1].swapaxes(2, 3)


def _backward_col2im(x, w, gy, stride, padding, dilation, groups, need):
    """Any stride: dW from the columns of x, dX by scattering the column gradient back."""
    xp, G = get_array_module(gy), groups
    (N, C), O, T = x.shape[:2], w.shape[0], w.shape[2] * w.shape[3]
    Cg, Og = C // G, O // G
    g = flat_geometry(x.shape[2:], w.shape[2:], stride, padding, dilation)
    (OH, OW), P = g.out_size, g.pitch
    M, S, Q = OH * P, stride[0] * stride[1], g.phase_len
    wg = w.reshape(G, Og, -1)
    gx = xp.empty_like(x) if need[0] else None

    def work(blocks):  # one worker's blocks, with its own buffers and its own part of dW
        gwt, bufs = xp.zeros((G, Cg * T, Og), wg.dtype), {}
        for (n0, n1), (g0, g1) in blocks:
            m, gb = n1 - n0, g1 - g0
            if (m, gb) not in bufs:
                bufs[m, gb] = (xp.zeros((m, gb * Cg, S, Q), x.dtype), xp.zeros((gb * Cg, T, m, M), x.dtype),
                               xp.zeros((gb * Og, m, OH, P), x.dtype), xp.zeros((m, gb * Cg, S, Q), x.dtype))
            xph, col, gyw, gxph = bufs[m, gb]
            gyw[..., :OW] = gy[n0:n1, g0 * Og:g1 * Og].swapaxes(0, 1)  # garbage columns stay zero
            gyg = gyw.reshape(gb, Og, m * M)
            if need[1]:
                cols = im2col_flat(pad_phases(x[n0:n1, g0 * Cg:g1 * Cg], g, xph), g, col).reshape(gb, -1, m * M)
                gwt[g0:g1] += cols @ gyg.swapaxes(1, 2)
            if need[0]:  # the column gradient overwrites the columns; its tail is zero like theirs
                xp.matmul(wg[g0:g1].swapaxes(1, 2), gyg, out=col.reshape(gb, -1, m * M))
                unpad_phases(col2im_flat(col, g, gxph), g, gx[n0:n1, g0 * Cg:g1 * Cg])
        return gwt

    gwts = run_blocks(work, chunks(xp, N, G, Cg * T * M * x.itemsize, M), _parallel(Og, Cg * T))
    return gx, sum(gwts[1:], gwts[0]).swapaxes(1, 2) if need[1] else None
