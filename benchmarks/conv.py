"""skengine conv2d vs PyTorch CPU, forward and forward+backward, on the SK shapes.

    PYTHONPATH=. python benchmarks/conv.py [--quick] [--threads N] [--repeats R] [--device cuda]

Both libraries run in one process with the same thread count (PyTorch's
set_num_threads and NumPy's BLAS, through threadpoolctl, are set to N,
default the BLAS' own count) and are timed alternately, round after round.
The ratio printed is PyTorch's time / skengine's time per round, median over
rounds: > 1 means skengine is faster.  Without torch only skengine is timed.
--reference also times the straightforward NumPy convolution skengine started
from (whole-batch tap-loop im2col, one batched matmul, col2im; columns kept
for backward) and prints skengine's speed-up over it.  --device cuda runs skengine on CuPy and
PyTorch on cuDNN (TF32 off: both in float32), each call followed by a device synchronize.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skengine as sk  # noqa: E402
import skengine.functional as F  # noqa: E402
from common import blas_threads, limit_threads, machine_report, median, paired_ratio, table, time_alternately  # noqa: E402
from skengine.convolution import CHUNK_BYTES  # noqa: E402
from skengine.im2col import col2im, im2col  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def sk_shapes(quick=False):
    """(label, N, C, H, groups, dilation, stride) for the SK layer's 3x3 convolutions.

    C in = C out; with stride 2 the input has twice the stage's resolution.
    """
    if quick:
        return [("issue", 64, 64, 32, 32, 1, 1), ("issue dense", 64, 64, 32, 1, 1, 1),
                ("cifar1", 128, 32, 32, 32, 2, 1), ("cifar2", 128, 64, 16, 32, 1, 1),
                ("cifar2", 128, 64, 32, 32, 2, 2), ("cifar3", 128, 128, 8, 8, 2, 1),
                ("cifar3", 128, 128, 8, 1, 1, 1),
                ("sk50-1", 8, 128, 56, 32, 1, 1), ("sk50-3", 8, 512, 28, 32, 2, 2), ("sk50-4", 8, 1024, 7, 32, 2, 1)]
    shapes = [("issue", 64, 64, 32, 32, 1, 1), ("issue dense", 64, 64, 32, 1, 1, 1)]
    for stage, (C, H) in enumerate([(32, 32), (64, 16), (128, 8)], 1):
        for stride in (1, 2):
            for G in (1, 8, 32):
                for d in (1, 2):
                    shapes.append((f"cifar{stage}", 128, C, H * stride, G, d, stride))
    for stage, (C, H) in enumerate([(128, 56), (256, 28), (512, 14), (1024, 7)], 1):
        for stride in ((1,) if stage == 1 else (1, 2)):
            for d in (1, 2):
                shapes.append((f"sk50-{stage}", 16, C, H * stride, 32, d, stride))
    return shapes


def reference_conv(x, w, gy, stride, padding, dilation, groups):
    """The straightforward version: im2col of the whole batch, (G, O/G, K) @ (N, G, K, L), col2im.

    Returns y, or (y, gx, gw) when gy is given.
    """
    N, (O, Cg, kh, kw), G = x.shape[0], w.shape, groups
    col = im2col(x, (kh, kw), (stride,) * 2, (padding,) * 2, (dilation,) * 2)
    OH, OW = col.shape[-2:]
    col = col.reshape(N, G, Cg * kh * kw, OH * OW)
    wg = w.reshape(G, O // G, Cg * kh * kw)
    y = (wg @ col).reshape(N, O, OH, OW)
    if gy is None:
        return y
    g = gy.reshape(N, G, O // G, OH * OW)
    gw = (g @ col.swapaxes(-1, -2)).sum(axis=0).reshape(w.shape)
    del col
    gcol = (wg.swapaxes(-1, -2) @ g).reshape(N, G * Cg, kh, kw, OH, OW)
    gx = col2im(gcol, x.shape[2:], (stride,) * 2, (padding,) * 2, (dilation,) * 2)
    return y, gx, gw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a reduced shape set (a few minutes)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: the BLAS')")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reference", action="store_true", help="also time the straightforward NumPy version")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    threads = args.threads or blas_threads()
    if args.reference and args.device != "cpu":
        ap.error("--reference is the NumPy version: it runs on the CPU only")
    if torch is not None:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
    if args.device == "cuda":
        cp = sk.backend.cupy()
        sync = cp.cuda.Device().synchronize
        tsync = torch.cuda.synchronize if torch is not None else None
        extra = [f"GPU: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}; cupy {cp.__version__}"]
    else:
        sync = tsync = (lambda: None)
        extra = []
    extra += [f"torch {torch.__version__}, {threads} threads" if torch is not None else "torch: not installed",
             f"threads used: {threads}; skengine convolution.CHUNK_BYTES = {CHUNK_BYTES}",
             "command: " + " ".join([os.path.basename(sys.executable)] + sys.argv)]
    rng = np.random.default_rng(0)
    rows = []
    with limit_threads(threads):
        print("\n".join(machine_report(extra)), flush=True)
        for label, N, C, H, G, d, s in sk_shapes(args.quick):
            x = rng.standard_normal((N, C, H, H)).astype(args.dtype)
            w = (rng.standard_normal((C, C // G, 3, 3)) * 0.1).astype(args.dtype)
            OH = (H - 1) // s + 1
            gy = rng.standard_normal((N, C, OH, OH)).astype(args.dtype)
            kw = dict(stride=s, padding=d, dilation=d, groups=G)
            sx = sk.Tensor(sk.to_device(x, args.device), requires_grad=True)
            sw = sk.Tensor(sk.to_device(w, args.device), requires_grad=True)
            sgy = sk.to_device(gy, args.device)

            def sk_f():
                with sk.no_grad():
                    F.conv2d(sx, sw, **kw)
                sync()

            def sk_fb():
                sx.grad = sw.grad = None
                F.conv2d(sx, sw, **kw).backward(sgy)
                sync()

            cands = {"sk_f": sk_f, "sk_fb": sk_fb}
            if args.reference:
                cands.update(ref_f=lambda: reference_conv(x, w, None, s, d, d, G),
                             ref_fb=lambda: reference_conv(x, w, gy, s, d, d, G))
            if torch is not None:
                tx = torch.tensor(x, requires_grad=True, device=args.device)
                tw = torch.tensor(w, requires_grad=True, device=args.device)
                tgy = torch.tensor(gy, device=args.device)

                def torch_f():
                    with torch.no_grad():
                        torch.nn.functional.conv2d(tx, tw, **kw)
                    tsync()

                def torch_fb():
                    tx.grad = tw.grad = None
                    torch.nn.functional.conv2d(tx, tw, **kw).backward(tgy)
                    tsync()

                cands.update(torch_f=torch_f, torch_fb=torch_fb)
            t = time_alternately(cands, repeats=args.repeats)
            gflop = 2 * N * C * (C // G) * 9 * OH * OH / 1e9
            row = [label, f"{N}x{C}x{H}x{H}", G, d, s, f"{gflop:.2f}",
                   f"{median(t['sk_f']) * 1e3:.1f}", f"{gflop / median(t['sk_f']):.1f}",
                   f"{median(t['sk_fb']) * 1e3:.1f}"]
            if torch is not None:
                row[7:7] = [f"{median(t['torch_f']) * 1e3:.1f}", f"{paired_ratio(t['torch_f'], t['sk_f']):.2f}"]
                row += [f"{median(t['torch_fb']) * 1e3:.1f}", f"{paired_ratio(t['torch_fb'], t['sk_fb']):.2f}"]
            if args.reference:
                row += [f"{median(t['ref_f']) * 1e3:.1f}", f"{paired_ratio(t['ref_f'], t['sk_f']):.2f}",
                        f"{median(t['ref_fb']) * 1e3:.1f}", f"{paired_ratio(t['ref_fb'], t['sk_fb']):.2f}"]
            rows.append(row)
            print(" ".join(map(str, row)), flush=True)
    headers = ["shape", "N x C x H x W", "groups", "dil", "stride", "GFLOP",
               "sk fwd ms", "sk GFLOP/s", "sk fwd+bwd ms"]
    if torch is not None:
        headers[7:7] = ["torch fwd ms", "fwd ratio"]
        headers += ["torch fwd+bwd ms", "fwd+bwd ratio"]
    if args.reference:
        headers += ["ref fwd ms", "speed-up", "ref fwd+bwd ms", "speed-up"]
    print()
    print(table(rows, headers))
    if torch is not None:
        print("\nratio = torch time / skengine time (median of per-round ratios); > 1: skengine is faster")


if __name__ == "__main__":
    main()
