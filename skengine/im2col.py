"""im2col / col2im: the kernels every convolution and pooling here rests on.

Two families, both plain slicing and copying (NumPy or CuPy alike):

* ``im2col`` / ``col2im`` -- the reference layout (N, C, kh, kw, OH, OW).
  They loop over the kh*kw kernel taps and move one strided slab per tap;
  padding is never materialised (each tap copies only the output positions
  whose input lies inside the image, the rest stays zero).  Pooling uses
  them, and they are the reference the faster kernels are tested against.

* ``pad_phases`` / ``im2col_flat`` / ``col2im_flat`` / ``unpad_phases`` --
  what the convolution uses.  The input is first copied once into a
  zero-padded buffer whose rows are flattened with pitch P, so every kernel
  tap becomes a *contiguous* 1-D shift of that buffer: ``col[c, tap, n, :] =
  xpad[n, c, off:off + L]``.  One memcpy-like run of about OH*P elements per
  channel replaces OH short strided rows, at the price of computing P - OW
  "garbage" output columns per row that the caller drops (P = W + p for a
  stride-1 "same" convolution: a row's right padding is the next row's left
  padding).  A stride s > 1 is reduced to stride 1 by splitting the padded
  input into its s*s polyphase components (rows and columns of one residue
  mod s): output (oh, ow) of tap (i, j) reads phase ((i*d) % s, (j*d) % s) at
  (oh + i*d // s, ow + j*d // s).  The columns are laid out channel-major,
  (C, kh*kw, n, OH*P), so that ``W.reshape(G, O/G, C/G*kh*kw) @
  col.reshape(G, C/G*kh*kw, n*OH*P)`` is one matmul per group over the whole
  chunk of n images.
"""
from collections import namedtuple

import numpy as np

from .backend import get_array_module

# the dtypes the CPU kernels beside the flat columns (winograd.py, regions.py) take: what BLAS multiplies; half
# precision has no BLAS and would lose too much in Winograd's transforms
FLOATS = (np.float32, np.float64)


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# -- reference layout (N, C, kh, kw, OH, OW) -------------------------------------
def tap_range(offset, stride, padding, size, out_size):
    """For one tap: the valid output range [lo, hi) and the input index of lo.

    Output position o reads input o*stride - padding + offset.
    """
    lo = max(0, -(-(padding - offset) // stride))
    hi = min(out_size, (size - 1 + padding - offset) // stride + 1)
    return lo, hi, lo * stride - padding + offset


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """(N, C, H, W) -> columns (N, C, kh, kw, OH, OW), zeros where padding."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    OH = conv_output_size(H, kh, sh, ph, dh)
    OW = conv_output_size(W, kw, sw, pw, dw)
    if kh == kw == 1 and ph == pw == 0:  # a 1x1 conv reads the input itself
        return x[:, :, None, None, ::sh, ::sw][..., :OH, :OW]
    col = xp.zeros((N, C, kh, kw, OH, OW), dtype=x.dtype)
    for i in range(kh):
        h_lo, h_hi, h0 = tap_range(i * dh, sh, ph, H, OH)
        if h_hi <= h_lo:
            continue
        for j in range(kw):
            w_lo, w_hi, w0 = tap_range(j * dw, sw, pw, W, OW)
            if w_hi <= w_lo:
                continue
            col[:, :, i, j, h_lo:h_hi, w_lo:w_hi] = \
                x[:, :, h0:h0 + (h_hi - h_lo - 1) * sh + 1:sh, w0:w0 + (w_hi - w_lo - 1) * sw + 1:sw]
    return col


def col2im(col, input_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """The adjoint of im2col: scatter-add columns back into an (N, C, H, W) image."""
    xp = get_array_module(col)
    N, C, kh, kw, OH, OW = col.shape
    H, W = input_size
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x = xp.zeros((N, C, H, W), dtype=col.dtype)
    for i in range(kh):
        h_lo, h_hi, h0 = tap_range(i * dh, sh, ph, H, OH)
        if h_hi <= h_lo:
            continue
        for j in range(kw):
            w_lo, w_hi, w0 = tap_range(j * dw, sw, pw, W, OW)
            if w_hi <= w_lo:
                continue
            x[:, :, h0:h0 + (h_hi - h_lo - 1) * sh + 1:sh, w0:w0 + (w_hi - w_lo - 1) * sw + 1:sw] += \
                col[:, :, i, j, h_lo:h_hi, w_lo:w_hi]
    return x


# -- flat layout: padded polyphase buffer + contiguous tap shifts ---------------
FlatGeometry = namedtuple("FlatGeometry", [
    "input_size",  # (H, W)
    "stride",      # (sh, sw)
    "out_size",    # (OH, OW): the real output
    "pitch",       # P: the row pitch of the phase images and of the output grid
    "phase_len",   # the flat length of one phase image in the buffer
    "placements",  # per phase: (image rows, image cols, flat start of its first row)
    "length",      # L = (OH-1)*P + OW: how much of a column row each tap fills
    "taps",        # per tap (i, j) in row-major order: (phase index, flat offset)
])


def flat_geometry(input_size, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Everything the flat kernels need to know about one convolution's shape.

    Padded row r = h + ph lies in phase row r // sh of phase a = r % sh
    (columns alike).  Each phase image is stored with row pitch P, its image
    columns first and zeros after them: the zeros at the end of a row serve
    as the right padding of that row and the left padding of the next one,
    so P = W + max(left, right padding) (stride 1) rather than W + both.
    Columns have kh*kw rows of OH*P elements per (channel, image); output
    (oh, ow) sits at oh*P + ow, and ow in [OW, P) are garbage positions.
    """
    (H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = input_size, kernel_size, stride, padding, dilation
    OH = conv_output_size(H, kh, sh, ph, dh)
    OW = conv_output_size(W, kw, sw, pw, dw)
    rows, cols = _axis_phases(H, kh, sh, ph, dh, OH), _axis_phases(W, kw, sw, pw, dw, OW)
    used_cols = [c for c in cols if c.used]
    P = max([OW] + [c.size + max(c.first, c.after) for c in used_cols])
    base = max(c.first for c in used_cols)  # room for the first row's left padding
    last_row = max([OH - 1 + i * dh // sh for i in range(kh)] + [r.first + r.size - 1 for r in rows if r.used])
    # a phase no tap reads (when the stride divides i*d) is never filled: its start is None
    placements = tuple((r.image, c.image, base + r.first * P if r.used and c.used else None)
                       for r in rows for c in cols)
    taps = tuple(((i * dh % sh) * sw + j * dw % sw,
                  base + (i * dh // sh) * P + j * dw // sw - cols[j * dw % sw].first)
                 for i in range(kh) for j in range(kw))
    return FlatGeometry((H, W), (sh, sw), (OH, OW), P, base + (last_row + 1) * P, placements,
                        (OH - 1) * P + OW, taps)


_AxisPhase = namedtuple("_AxisPhase", [
    "image",  # the slice of image rows (or columns) in this phase
    "first",  # the phase row of the first of them: how many padding rows precede it
    "size",   # how many there are
    "after",  # how many padding rows after them some tap reads
    "used",   # whether any tap reads this phase at all
])


def _axis_phases(size, k, s, p, d, out):
    """One axis of flat_geometry: for each phase a in range(s), an _AxisPhase."""
    phases = []
    for a in range(s):
        h0 = (a - p) % s
        n, first = len(range(h0, size, s)), (h0 + p) // s
        shifts = [i * d // s for i in range(k) if i * d % s == a]
        last = out - 1 + max(shifts, default=0)  # the last phase row a tap reads
        phases.append(_AxisPhase(slice(h0, size, s), first, n, max(0, last - (first + n - 1)), bool(shifts)))
    return phases


def _image_area(buf, g, p, nh, nw):
    """The (n, C, nh, nw) view of phase p's image area in a phase buffer."""
    start = g.placements[p][2]
    return buf[:, :, p, start:start + nh * g.pitch].reshape(buf.shape[:2] + (nh, g.pitch))[..., :nw]


def pad_phases(x, g, out):
    """Copy (n, C, H, W) images into the zero-padded phase buffer ``out`` (n, C, sh*sw, phase_len).

    Only the image area is written: the padding of ``out`` must already be
    zero (allocate it with zeros and reuse it).
    """
    for p, (rows, cols, start) in enumerate(g.placements):
        if start is not None:
            part = x[:, :, rows, cols]
            _image_area(out, g, p, *part.shape[2:])[...] = part
    return out


def unpad_phases(xph, g, out):
    """The adjoint of pad_phases: the image area of the phase buffer into ``out`` (n, C, H, W)."""
    for p, (rows, cols, start) in enumerate(g.placements):
        part = out[:, :, rows, cols]
        part[...] = 0 if start is None else _image_area(xph, g, p, *part.shape[2:])
    return out


def im2col_flat(xph, g, out):
    """Phase buffer (n, C, S, phase_len) -> columns ``out`` (C, kh*kw, n, OH*P): one contiguous shift per tap.

    Writes the first L elements of every column row; the rest (garbage
    positions of the last output row) is left as it is -- keep it zero.
    """
    L = g.length
    for t, (p, off) in enumerate(g.taps):
        out[:, t, :, :L] = xph[:, :, p, off:off + L].swapaxes(0, 1)
    return out


def col2im_flat(col, g, out):
    """The adjoint of im2col_flat: add columns (C, kh*kw, n, OH*P) into the phase buffer ``out``.

    ``out`` (n, C, S, phase_len) is zeroed first.  The columns' garbage
    positions must hold zeros (they do when they come from a gradient whose
    garbage positions are zero).
    """
    L = g.length
    out.fill(0)
    for t, (p, off) in enumerate(g.taps):
        out[:, :, p, off:off + L] += col[:, t, :, :L].swapaxes(0, 1)
    return out
