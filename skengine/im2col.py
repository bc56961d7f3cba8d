"""im2col / col2im: the kernels every convolution and pooling here rests on.

Two families, both plain slicing and copying (NumPy or CuPy alike):

* ``im2col`` / ``col2im`` -- the reference layout (N, C, kh, kw, OH, OW).
  They loop over the kh*kw kernel taps and move one strided slab per tap;
  padding is never materialised (each tap copies only the output positions
  whose input lies inside the image, the rest stays zero).  Pooling uses
  them, and they are the reference the faster kernels are tested against.

* ``pad_phases`` / ``im2col_flat`` / ``col2im_flat`` / ``unpad_phases`` --
  what the convolution uses.  The input is first copied once into a
  zero-padded buffer whose rows are flattened, so every kernel tap becomes a
  *contiguous* 1-D shift of that buffer: ``col[c, tap, n, :] = xpad[n, c,
  off:off + L]``.  One memcpy-like run of about OH*Wp elements per channel
  replaces OH short strided rows, at the price of computing Wp - OW
  "garbage" output columns per row that the caller drops.  A stride s > 1 is
  reduced to stride 1 by splitting the padded input into its s*s polyphase
  components (rows and columns of one residue mod s): output (oh, ow) of tap
  (i, j) reads phase ((i*d) % s, (j*d) % s) at (oh + i*d // s, ow + j*d // s).
  The columns are laid out channel-major, (C, kh*kw, n, OH*Wq), so that
  ``W.reshape(G, O/G, C/G*kh*kw) @ col.reshape(G, C/G*kh*kw, n*OH*Wq)`` is one
  matmul per group over the whole chunk of n images.
"""
from collections import namedtuple

from .backend import get_array_module


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# -- reference layout (N, C, kh, kw, OH, OW) -------------------------------------
def _tap(offset, stride, padding, size, out_size):
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
        h_lo, h_hi, h0 = _tap(i * dh, sh, ph, H, OH)
        if h_hi <= h_lo:
            continue
        for j in range(kw):
            w_lo, w_hi, w0 = _tap(j * dw, sw, pw, W, OW)
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
        h_lo, h_hi, h0 = _tap(i * dh, sh, ph, H, OH)
        if h_hi <= h_lo:
            continue
        for j in range(kw):
            w_lo, w_hi, w0 = _tap(j * dw, sw, pw, W, OW)
            if w_hi <= w_lo:
                continue
            x[:, :, h0:h0 + (h_hi - h_lo - 1) * sh + 1:sh, w0:w0 + (w_hi - w_lo - 1) * sw + 1:sw] += \
                col[:, :, i, j, h_lo:h_hi, w_lo:w_hi]
    return x


# -- flat layout: padded polyphase buffer + contiguous tap shifts ---------------
FlatGeometry = namedtuple("FlatGeometry", [
    "input_size",  # (H, W)
    "padding",     # (ph, pw)
    "stride",      # (sh, sw)
    "out_size",    # (OH, OW): the real output
    "phase_size",  # (Hq, Wq): each of the sh*sw phase images of the padded input
    "length",      # L = (OH-1)*Wq + OW: how much of a column row each tap fills
    "taps",        # per tap (i, j) in row-major order: (phase index, flat offset)
])


def flat_geometry(input_size, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Everything the flat kernels need to know about one convolution's shape.

    Columns have kh*kw rows of OH*Wq elements per (channel, image); output
    (oh, ow) sits at oh*Wq + ow, and ow in [OW, Wq) are garbage positions.
    """
    (H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = input_size, kernel_size, stride, padding, dilation
    OH = conv_output_size(H, kh, sh, ph, dh)
    OW = conv_output_size(W, kw, sw, pw, dw)
    Hq, Wq = (H + 2 * ph - 1) // sh + 1, (W + 2 * pw - 1) // sw + 1
    taps = tuple(((i * dh % sh) * sw + j * dw % sw, (i * dh // sh) * Wq + j * dw // sw)
                 for i in range(kh) for j in range(kw))
    return FlatGeometry((H, W), (ph, pw), (sh, sw), (OH, OW), (Hq, Wq), (OH - 1) * Wq + OW, taps)


def _phase_slices(g):
    """For each phase (a, b): (image rows, image cols, phase-image rows, phase-image cols).

    Padded row r = h + ph lands in phase a = r % sh at row r // sh.
    """
    (H, W), (ph, pw), (sh, sw) = g.input_size, g.padding, g.stride
    out = []
    for a in range(sh):
        h0 = (a - ph) % sh
        nh = len(range(h0, H, sh))
        for b in range(sw):
            w0 = (b - pw) % sw
            nw = len(range(w0, W, sw))
            q, r = (h0 + ph) // sh, (w0 + pw) // sw
            out.append((slice(h0, H, sh), slice(w0, W, sw), slice(q, q + nh), slice(r, r + nw)))
    return out


def pad_phases(x, g, out):
    """Copy (n, C, H, W) images into the zero-padded phase buffer ``out`` (n, C, sh*sw, Hq*Wq).

    Only the image area is written: the padding border of ``out`` must
    already be zero (allocate it with zeros and reuse it).
    """
    n, C = x.shape[:2]
    phases = out.reshape(n, C, -1, *g.phase_size)
    for p, (rows, cols, qrows, qcols) in enumerate(_phase_slices(g)):
        phases[:, :, p, qrows, qcols] = x[:, :, rows, cols]
    return out


def unpad_phases(xph, g, out):
    """The adjoint of pad_phases: the image area of the phase buffer into ``out`` (n, C, H, W)."""
    n, C = out.shape[:2]
    phases = xph.reshape(n, C, -1, *g.phase_size)
    for p, (rows, cols, qrows, qcols) in enumerate(_phase_slices(g)):
        out[:, :, rows, cols] = phases[:, :, p, qrows, qcols]
    return out


def im2col_flat(xph, g, out):
    """Phase buffer (n, C, S, Hq*Wq) -> columns ``out`` (C, kh*kw, n, OH*Wq): one contiguous shift per tap.

    Writes the first L elements of every column row; the rest (garbage
    positions of the last output row) is left as it is -- keep it zero.
    """
    L = g.length
    for t, (p, off) in enumerate(g.taps):
        out[:, t, :, :L] = xph[:, :, p, off:off + L].swapaxes(0, 1)
    return out


def col2im_flat(col, g, out):
    """The adjoint of im2col_flat: add columns (C, kh*kw, n, OH*Wq) into the phase buffer ``out``.

    ``out`` (n, C, S, Hq*Wq) is zeroed first.  The columns' garbage positions
    must hold zeros (they do when they come from a gradient whose garbage
    positions are zero).
    """
    L = g.length
    out.fill(0)
    for t, (p, off) in enumerate(g.taps):
        out[:, :, p, off:off + L] += col[:, t, :, :L].swapaxes(0, 1)
    return out
