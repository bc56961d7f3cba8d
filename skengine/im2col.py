"""im2col / col2im: the kernels every convolution and pooling here rests on.

The column buffer is laid out (N, C, kh, kw, OH, OW).  Viewed as
(N, G, C/G*kh*kw, OH*OW) it is exactly what a grouped convolution's batched
matmul wants, and ``W.reshape(G, O/G, C/G*kh*kw) @ col`` lands the output in
NCHW with no transpose.

Both kernels loop over the kh*kw kernel taps and move one strided slab per
tap (NumPy or CuPy alike).  Padding is never materialised: each tap copies
only the output positions whose input lies inside the image, and the rest of
the buffer stays zero.
"""
from .backend import get_array_module


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


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
