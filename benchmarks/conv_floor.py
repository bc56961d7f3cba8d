"""How close the convolutions of one training step come to what NumPy's BLAS allows.

    python benchmarks/conv_floor.py skresnet18 --size 32 --batch 128
    python benchmarks/conv_floor.py skresnext50_32x4d --size 64 --batch 32 --repeats 3

For every distinct convolution of the model's forward pass (shapes recorded from one forward), two
timings of its forward and its backward, alternating round by round:

* skengine: ``convolution.conv2d_forward`` / ``conv2d_backward`` on arrays;
* the GEMM floor: the same products as plain NumPy matmuls over operands that are already laid out
  (forward cols @ W, backward gy @ W^T and cols^T @ gy, per group, over the taps that read some pixel,
  no im2col, no garbage columns, no copies out): what an im2col convolution on this BLAS cannot beat.

The totals (each row times its count in a step) set against PyTorch's whole step (``train_step.py``) show
how much of the gap is the copying around the matmuls (skengine vs floor) and how much the matmul itself.
PyTorch's convolutions are not timed here one call at a time: after the pause that keeps the BLAS's
spinning threads apart, oneDNN's OpenMP threads wake for each call, which costs more than a small conv.
"""
import argparse
import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import skengine as sk  # noqa: E402
from common import machine_report, median, table, time_alternately  # noqa: E402
from skengine import convolution  # noqa: E402
from skengine.im2col import conv_output_size, tap_range  # noqa: E402
from skengine.models import create  # noqa: E402


def recorded_convolutions(model, x):
    """Counter of (x shape, w shape, stride, padding, dilation, groups) over one forward of ``model``."""
    calls, forward = Counter(), convolution.conv2d_forward

    def record(x, w, stride, padding, dilation, groups):
        calls[x.shape, w.shape, tuple(stride), tuple(padding), tuple(dilation), groups] += 1
        return forward(x, w, stride, padding, dilation, groups)

    import skengine.functional.conv as fconv
    convolution.conv2d_forward = fconv.conv2d_forward = record
    try:
        with sk.no_grad():
            model(sk.Tensor(x))
    finally:
        convolution.conv2d_forward = fconv.conv2d_forward = forward
    return calls


def live_taps(size, k, s, p, d, out):
    """How many of an axis's k taps read some pixel (the others read padding only and add nothing)."""
    return sum(tap_range(i * d, s, p, size, out)[1] > tap_range(i * d, s, p, size, out)[0] for i in range(k))


def candidates(shape, rng):
    (xs, ws, stride, padding, dilation, G) = shape
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
    y = convolution.conv2d_forward(x, w, stride, padding, dilation, G)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    N, (O, Cg, kh, kw) = xs[0], ws
    L = int(np.prod(y.shape[2:]))
    K = Cg * live_taps(xs[2], kh, stride[0], padding[0], dilation[0], y.shape[2]) \
        * live_taps(xs[3], kw, stride[1], padding[1], dilation[1], y.shape[3])
    cols = rng.standard_normal((G, N * L, K)).astype(np.float32)
    wm = rng.standard_normal((G, K, O // G)).astype(np.float32)
    gyc = rng.standard_normal((G, N * L, O // G)).astype(np.float32)
    wmt = np.ascontiguousarray(wm.swapaxes(1, 2))
    colst = np.ascontiguousarray(cols.swapaxes(1, 2))
    c = {"sk fwd": lambda: convolution.conv2d_forward(x, w, stride, padding, dilation, G),
         "sk bwd": lambda: convolution.conv2d_backward(x, w, gy, stride, padding, dilation, G),
         "floor fwd": lambda: cols @ wm,
         "floor bwd": lambda: (gyc @ wmt, colst @ gyc)}
    return c


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    model = create(args.model, num_classes=10)
    calls = recorded_convolutions(model, rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32))
    rows, totals = [], Counter()
    for shape, count in sorted(calls.items(), key=lambda kv: -kv[1]):
        times = {k: median(v) * 1e3 for k, v in time_alternately(candidates(shape, rng), repeats=args.repeats).items()}
        for k, v in times.items():
            totals[k] += count * v
        xs, ws, stride, padding, dilation, G = shape
        out = [conv_output_size(*a) for a in zip(xs[2:], ws[2:], stride, padding, dilation)]
        geometry = f"{ws[2]}x{ws[3]}" + (f" s{stride[0]}" if stride[0] > 1 else "") + \
            (f" d{dilation[0]}" if dilation[0] > 1 else "") + (f" g{G}" if G > 1 else "")
        rows.append([str(count), f"{xs[1]}->{ws[0]}, {xs[2]}->{out[0]} px", geometry]
                    + [f"{times[k]:.2f}" for k in ("sk fwd", "floor fwd", "sk bwd", "floor bwd")])
    names = ["sk fwd", "floor fwd", "sk bwd", "floor bwd"]
    rows.append(["", "**step total**", ""] + [f"**{totals[k]:.0f}**" for k in names])
    title = f"{args.model}, {args.size} px, batch {args.batch}: convolutions of one step, ms (median of " \
            f"{args.repeats}, alternating)"
    print("\n".join(machine_report([title])))
    print(table(rows, ["count", "channels, map", "kernel"] + names))
    sk_total, floor = totals["sk fwd"] + totals["sk bwd"], totals["floor fwd"] + totals["floor bwd"]
    print(f"skengine {sk_total:.0f} ms, GEMM floor {floor:.0f} ms ({floor / sk_total:.0%} of skengine)")


if __name__ == "__main__":
    main()
