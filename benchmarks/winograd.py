"""skengine's Winograd F(4, 3) along the width (``skengine/winograd.py``) against its im2col convolution, forward and
backward, on the 3x3 stride-1 shapes of ``sknet_cifar_fast`` (issue 29), alternating, one BLAS thread.

    OPENBLAS_NUM_THREADS=1 python benchmarks/winograd.py --batch 256

Both sides are ``convolution.conv2d_forward`` / ``conv2d_backward``; im2col is forced by raising
``winograd.MIN_CHANNELS`` out of reach.  Rows where ``winograd.applies`` says no run the same code twice (a
check of the noise).  The 2-D F(2x2, 3x3) prototype measured before this one (0.78x of im2col, forward) is in
benchmarks/history/2026-12-07-trainer-vs-pytorch-zen4.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import machine_report, median, table, time_alternately  # noqa: E402
from skengine import convolution, winograd  # noqa: E402

# (C, O, size, dilation, count in a step): sknet_cifar_fast's 3x3 convolutions at 32 px
SHAPES = [(24, 64, 31, 1, 1), (64, 64, 15, 1, 1), (64, 64, 15, 2, 1), (64, 128, 15, 1, 1), (128, 128, 7, 1, 2),
          (128, 128, 7, 2, 1), (128, 128, 3, 1, 1), (128, 128, 3, 2, 1)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows, totals, on = [], np.zeros(4), winograd.MIN_CHANNELS

    def engine(min_channels, fn):
        def run():
            winograd.MIN_CHANNELS = min_channels
            try:
                fn()
            finally:
                winograd.MIN_CHANNELS = on
        return run

    for C, O, S, d, count in SHAPES:
        x = rng.standard_normal((args.batch, C, S, S)).astype(np.float32)
        w = (rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
        g = ((1, 1), (d, d), (d, d), 1)
        gy = rng.standard_normal(convolution.conv2d_forward(x, w, *g).shape).astype(np.float32)
        forward, backward = (lambda: convolution.conv2d_forward(x, w, *g),
                             lambda: convolution.conv2d_backward(x, w, gy, *g))
        t = time_alternately({"im2col fwd": engine(10 ** 9, forward), "winograd fwd": engine(on, forward),
                              "im2col bwd": engine(10 ** 9, backward), "winograd bwd": engine(on, backward)},
                             repeats=args.repeats)
        ms = np.array([1e3 * median(v) for v in t.values()])
        totals += count * ms
        used = winograd.applies(x, w, *g[:3], 1) or winograd.applies(gy, w.swapaxes(0, 1), (1, 1), g[2], g[2], 1)
        rows.append([f"{C}->{O}, {S} px" + (f", d{d}" if d > 1 else "") + (f" (x{count})" if count > 1 else ""),
                     "yes" if used else "no", *(f"{v:.1f}" for v in ms), f"{(ms[0] + ms[2]) / (ms[1] + ms[3]):.2f}x"])
    speed_up = (totals[0] + totals[2]) / (totals[1] + totals[3])
    rows.append(["**total**", "", *(f"{v:.1f}" for v in totals), f"{speed_up:.2f}x"])
    print("\n".join(machine_report([f"batch {args.batch}, median of {args.repeats}, alternating"])))
    print(table(rows, ["conv 3x3", "winograd", "im2col fwd ms", "winograd fwd ms", "im2col bwd ms", "winograd bwd ms",
                       "speed-up"]))


if __name__ == "__main__":
    main()
