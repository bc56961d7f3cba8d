"""im2col / col2im strategies and contraction layouts, on the SK convolution shapes.

    PYTHONPATH=. python benchmarks/im2col.py [--quick] [--repeats R] [--threads N] [--plot FILE]

im2col (whole batch, float32):
  taps      skengine.im2col.im2col: a loop over kernel taps, one strided slab copy each
  strided   np.pad, then a sliding_window_view (an as_strided view) and one copy
  fancy     np.pad, then fancy indexing with (kh, kw, OH, OW) row/column index arrays
  flat      skengine's conv kernels: pad_phases + im2col_flat (contiguous shifts)
  flat/chunk  the same, whole images chunk by chunk into one reused buffer (like Conv2d)
col2im (columns -> image):
  taps +=   skengine.im2col.col2im: a loop over kernel taps with +=
  add.at    np.add.at with the fancy index arrays, into a padded image
  bincount  np.bincount of flat indices weighted by the columns
  flat      col2im_flat + unpad_phases
contraction (columns -> grouped conv output):
  matmul    W.reshape(G, O/G, K) @ col.reshape(N, G, K, OH*OW): output lands in NCHW
  einsum    np.einsum("gok,ngkl->ngol")
  tensordot np.tensordot per group, then a transpose into NCHW
  conv2d    skengine's whole forward (its own flat, chunked im2col + matmul included)

Time is the median of alternating rounds; GB/s counts the column buffer once
(im2col, col2im), GFLOP/s the convolution's 2*N*O*C/G*kh*kw*OH*OW; peak
memory is what tracemalloc sees NumPy allocate during one call.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skengine as sk  # noqa: E402
import skengine.functional as F  # noqa: E402
from common import limit_threads, machine_report, median, peak_memory, table, time_alternately  # noqa: E402
from skengine.convolution import CHUNK_BYTES  # noqa: E402
from skengine.im2col import col2im, col2im_flat, flat_geometry, im2col, im2col_flat, pad_phases, unpad_phases  # noqa: E402


def shapes(quick=False):
    """(label, N, C, H, groups, dilation, stride) with 3x3 kernels, C in = C out."""
    if quick:
        return [("cifar1", 128, 32, 32, 32, 1, 1), ("cifar1", 128, 32, 32, 8, 2, 1),
                ("cifar2", 128, 64, 32, 32, 1, 2), ("cifar2", 128, 64, 16, 1, 2, 1),
                ("cifar3", 128, 128, 8, 32, 2, 1), ("sk50-2", 8, 256, 28, 32, 1, 1)]
    out = []
    for stage, (C, H) in enumerate([(32, 32), (64, 16), (128, 8)], 1):
        for stride in (1, 2):
            for G in (1, 8, 32):
                for d in (1, 2):
                    out.append((f"cifar{stage}", 128, C, H * stride, G, d, stride))
    for N in (8, 32):
        for stage, (C, H) in enumerate([(128, 56), (256, 28), (512, 14), (1024, 7)], 1):
            out.append((f"sk50-{stage}", N, C, H, 32, 1, 1))
    return out


def tap_indices(H, W, k, s, p, d):
    """Row and column index arrays (kh, kw, OH, OW) into the padded image."""
    OH = (H + 2 * p - d * (k - 1) - 1) // s + 1
    OW = (W + 2 * p - d * (k - 1) - 1) // s + 1
    i = np.arange(k)[:, None, None, None] * d + np.arange(OH)[None, None, :, None] * s
    j = np.arange(k)[None, :, None, None] * d + np.arange(OW)[None, None, None, :] * s
    return np.broadcast_to(i, (k, k, OH, OW)), np.broadcast_to(j, (k, k, OH, OW))


# -- im2col strategies ---------------------------------------------------------
def im2col_strided(x, k, s, p, d):
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xpad, (d * (k - 1) + 1,) * 2, axis=(2, 3))
    win = win[:, :, ::s, ::s, ::d, ::d]  # (N, C, OH, OW, kh, kw)
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))


def im2col_fancy(x, k, s, p, d, idx):
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return xpad[:, :, idx[0], idx[1]]


def im2col_flat_batch(x, g):
    N, C = x.shape[:2]
    (OH, _), S = g.out_size, g.stride[0] * g.stride[1]
    xph = pad_phases(x, g, np.zeros((N, C, S, g.phase_len), x.dtype))
    return im2col_flat(xph, g, np.zeros((C, len(g.taps), N, OH * g.pitch), x.dtype))


def im2col_flat_chunks(x, g, nb, bufs):
    """Like Conv2d: chunks of nb images through one reused buffer (returns the last)."""
    N, C = x.shape[:2]
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        if n1 - n0 not in bufs:
            (OH, _), S = g.out_size, g.stride[0] * g.stride[1]
            bufs.clear()
            bufs[n1 - n0] = (np.zeros((n1 - n0, C, S, g.phase_len), x.dtype),
                             np.zeros((C, len(g.taps), n1 - n0, OH * g.pitch), x.dtype))
        xph, col = bufs[n1 - n0]
        im2col_flat(pad_phases(x[n0:n1], g, xph), g, col)
    return col


# -- col2im strategies ---------------------------------------------------------
def col2im_add_at(col, H, W, p, idx):
    N, C = col.shape[:2]
    xpad = np.zeros((N, C, H + 2 * p, W + 2 * p), col.dtype)
    np.add.at(xpad, (slice(None), slice(None), idx[0], idx[1]), col)
    return xpad[:, :, p:p + H, p:p + W]


def col2im_bincount(col, H, W, p, idx):
    N, C = col.shape[:2]
    Hp, Wp = H + 2 * p, W + 2 * p
    flat = (np.arange(N * C).reshape(N, C, 1, 1, 1, 1) * (Hp * Wp) + idx[0] * Wp + idx[1]).ravel()
    xpad = np.bincount(flat, weights=col.ravel(), minlength=N * C * Hp * Wp).astype(col.dtype)
    return xpad.reshape(N, C, Hp, Wp)[:, :, p:p + H, p:p + W]


def col2im_flat_batch(colf, g, N, C, dtype):
    gxph = col2im_flat(colf, g, np.empty((N, C, g.stride[0] * g.stride[1], g.phase_len), dtype))
    return unpad_phases(gxph, g, np.empty((N, C) + tuple(g.input_size), dtype))


# -- contraction layouts -------------------------------------------------------
def contract_matmul(col, wg):
    N, G = col.shape[0], wg.shape[0]
    return wg @ col.reshape(N, G, wg.shape[2], -1)


def contract_einsum(col, wg):
    N, G = col.shape[0], wg.shape[0]
    return np.einsum("gok,ngkl->ngol", wg, col.reshape(N, G, wg.shape[2], -1))


def contract_tensordot(col, wg):
    N, G = col.shape[0], wg.shape[0]
    c = col.reshape(N, G, wg.shape[2], -1)
    return np.stack([np.tensordot(c[:, g], wg[g], axes=([1], [1])) for g in range(G)], axis=1).transpose(0, 1, 3, 2)


def measure(fns, repeats):
    t = time_alternately(fns, repeats=repeats, warmup=1, pause=0.05)
    return {k: median(v) for k, v in t.items()}, {k: peak_memory(f) for k, f in fns.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a reduced shape set (a few minutes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="limit the BLAS to N threads (needs threadpoolctl)")
    ap.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "im2col.png"))
    args = ap.parse_args()
    with limit_threads(args.threads):
        print("\n".join(machine_report(["command: " + " ".join([os.path.basename(sys.executable)] + sys.argv)])))
        results = run(args)
    for kind, unit in (("im2col", "GB/s"), ("col2im", "GB/s"), ("contraction", "GFLOP/s")):
        strategies = list(results[kind][0][1])
        rows = [[name] + [f"{t[m] * 1e3:.1f} ms, {r[m]:.1f}, {mem[m] / 2**20:.0f} MiB" for m in strategies]
                for name, t, mem, r in results[kind]]
        print(f"\n{kind}: time, {unit}, peak memory\n")
        print(table(rows, ["shape"] + strategies))
    plot(results, args.plot)


def run(args):
    rng = np.random.default_rng(0)
    results = {"im2col": [], "col2im": [], "contraction": []}
    for label, N, C, H, G, d, s in shapes(args.quick):
        k, p = 3, d
        name = f"{label} {N}x{C}x{H} g{G} d{d} s{s}"
        print(name, flush=True)
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        wg = rng.standard_normal((G, C // G, C // G * k * k)).astype(np.float32)
        g = flat_geometry((H, H), (k, k), (s, s), (p, p), (d, d))
        (OH, OW), P = g.out_size, g.pitch
        idx = tap_indices(H, H, k, s, p, d)
        ref = im2col(x, (k, k), (s, s), (p, p), (d, d))
        colf = im2col_flat_batch(x, g)
        # every strategy gives the reference columns (flat ones up to layout and garbage columns)
        assert np.array_equal(im2col_strided(x, k, s, p, d), ref)
        assert np.array_equal(im2col_fancy(x, k, s, p, d, idx), ref)
        assert np.array_equal(colf.reshape(C, k, k, N, OH, P)[..., :OW].transpose(3, 0, 1, 2, 4, 5), ref)
        col_bytes = ref.nbytes
        nb = max(1, CHUNK_BYTES // (C * k * k * OH * P * 4))
        bufs = {}
        t, mem = measure({"taps": lambda: im2col(x, (k, k), (s, s), (p, p), (d, d)),
                          "strided": lambda: im2col_strided(x, k, s, p, d),
                          "fancy": lambda: im2col_fancy(x, k, s, p, d, idx),
                          "flat": lambda: im2col_flat_batch(x, g),
                          "flat/chunk": lambda: im2col_flat_chunks(x, g, nb, bufs)}, args.repeats)
        results["im2col"].append((name, t, mem, {kk: col_bytes / v / 1e9 for kk, v in t.items()}))

        ref_img = col2im(ref, (H, H), (s, s), (p, p), (d, d))
        colf_clean = colf.reshape(C, k * k, N, OH, P).copy()
        colf_clean[..., OW:] = 0  # a gradient's garbage columns are zero
        colf_clean = colf_clean.reshape(colf.shape)
        for got in (col2im_add_at(ref, H, H, p, idx), col2im_bincount(ref, H, H, p, idx),
                    col2im_flat_batch(colf_clean, g, N, C, x.dtype)):
            np.testing.assert_allclose(got, ref_img, rtol=1e-4, atol=1e-4)
        t, mem = measure({"taps +=": lambda: col2im(ref, (H, H), (s, s), (p, p), (d, d)),
                          "add.at": lambda: col2im_add_at(ref, H, H, p, idx),
                          "bincount": lambda: col2im_bincount(ref, H, H, p, idx),
                          "flat": lambda: col2im_flat_batch(colf_clean, g, N, C, x.dtype)}, args.repeats)
        results["col2im"].append((name, t, mem, {kk: col_bytes / v / 1e9 for kk, v in t.items()}))

        w4 = wg.reshape(C, C // G, k, k)
        tx, tw = sk.Tensor(x), sk.Tensor(w4)
        y = contract_matmul(ref, wg)
        np.testing.assert_allclose(contract_einsum(ref, wg), y, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(contract_tensordot(ref, wg), y, rtol=1e-3, atol=1e-3)

        def conv():
            with sk.no_grad():
                return F.conv2d(tx, tw, stride=s, padding=p, dilation=d, groups=G)
        np.testing.assert_allclose(conv().numpy(), y.reshape(N, C, OH, OW), rtol=1e-3, atol=1e-3)
        flop = 2 * N * C * (C // G) * k * k * OH * OW
        t, mem = measure({"matmul": lambda: contract_matmul(ref, wg), "einsum": lambda: contract_einsum(ref, wg),
                          "tensordot": lambda: contract_tensordot(ref, wg), "conv2d": conv}, args.repeats)
        results["contraction"].append((name, t, mem, {kk: flop / v / 1e9 for kk, v in t.items()}))
    return results


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot written)")
        return
    fig, axes = plt.subplots(3, 1, figsize=(12, 12), sharex=True)
    for ax, (kind, rows) in zip(axes, results.items()):
        names = [r[0] for r in rows]
        for m in rows[0][1]:
            ax.plot(range(len(rows)), [r[1][m] * 1e3 for r in rows], "o-", label=m)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title(kind)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    axes[-1].set_xticks(range(len(names)))
    axes[-1].set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nplot written to {path}")


if __name__ == "__main__":
    main()
