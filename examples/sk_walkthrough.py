"""Walk through one SK convolution, stage by stage, on a real CIFAR batch (or random data).

    python examples/sk_walkthrough.py                      # random 32x32 "images"
    python examples/sk_walkthrough.py --data-dir DIR       # a CIFAR-10 test batch from DIR

Each printed stage names the code that computed it, so you can read along in
the source: skengine/nn/sk.py holds the layer, skengine/functional/ the
functions it calls.  It ends by differentiating the whole layer and checking
every gradient against finite differences with skengine.gradcheck.
"""
import argparse
import inspect
import os
import sys

import numpy as np

import skengine as sk
import skengine.functional as F
from skengine.nn import SKConv


def where(fn):
    """'file:line function' of a function or method, relative to the repository."""
    fn = inspect.unwrap(fn)
    path = os.path.relpath(inspect.getsourcefile(fn), os.path.dirname(os.path.dirname(sk.__file__)))
    return f"{path}:{inspect.getsourcelines(fn)[1]} {fn.__qualname__}"


def show(name, t, code, out):
    a = t.numpy() if isinstance(t, sk.Tensor) else t
    print(f"{name:<28} shape {str(tuple(a.shape)):<18} mean {a.mean():+.4f} std {a.std():.4f} "
          f"min {a.min():+.3f} max {a.max():+.3f}\n{'':<28} <- {code}", file=out)


def load_batch(data_dir, n):
    if data_dir is None:
        return np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32)).astype(np.uint8), "random data"
    from skengine.data import load_cifar
    x, _ = load_cifar(data_dir, "cifar10", train=False)
    return x[:n], f"the first {n} CIFAR-10 test images from {data_dir}"


def walkthrough(data_dir=None, batch=8, channels=16, out=sys.stdout):
    sk.manual_seed(0)
    images, source = load_batch(data_dir, batch)
    x = sk.Tensor((images.astype(np.float32) / 255 - 0.5) / 0.25)
    stem = sk.nn.Conv2d(3, channels, 3, padding=1, bias=False)  # lift RGB to C channels first
    layer = SKConv(channels, channels, kernel_sizes=(3, 5), groups=4, reduction=4, min_dim=8)
    print(f"input: {source}\nlayer: {layer}\n", file=out)
    with sk.no_grad():
        h = stem(x)
        show("X (after a 3x3 stem conv)", h, where(F.conv2d), out)
        print("\n-- Split: one conv + BN + ReLU per path (the '5x5' path is a 3x3 with dilation 2)", file=out)
        U = []
        for m, path in enumerate(layer.paths):
            U.append(path(h))
            conv = path.conv
            show(f"U_{m + 1} ({conv.kernel_size[0]}x{conv.kernel_size[1]}, dilation {conv.dilation[0]})", U[m],
                 f"{where(F.conv2d)}, {where(F.batch_norm)}, {where(F.relu)}", out)
        print("\n-- Fuse: U = sum of paths, s = global average pool, z = ReLU(BN(fc(s)))", file=out)
        u = U[0] + U[1]
        show("U = U_1 + U_2", u, where(SKConv.forward), out)
        s = u.mean(dim=(2, 3))
        show("s = GAP(U)", s, where(sk.Tensor.mean), out)
        z = F.relu(layer.bn_reduce(layer.fc_reduce(s)))
        show(f"z (d = max(C/r, L) = {z.shape[1]})", z, f"{where(F.linear)}, {where(F.batch_norm)}", out)
        print("\n-- Select: one logit per path and channel, softmax across the paths", file=out)
        logits = layer.fc_select(z).reshape(-1, 2, channels)
        show("logits (N, M, C)", logits, where(F.linear), out)
        a = F.softmax(logits, dim=1)
        show("a = attention on path 1", a[:, 0], where(F.softmax), out)
        show("b = attention on path 2", a[:, 1], where(F.softmax), out)
        total = (a[:, 0] + a[:, 1]).numpy()
        print(f"{'a_c + b_c':<28} min {total.min():.6f} max {total.max():.6f}  (softmax across paths: always 1)",
              file=out)
        v = a[:, 0].reshape(-1, channels, 1, 1) * U[0] + a[:, 1].reshape(-1, channels, 1, 1) * U[1]
        show("V = a * U_1 + b * U_2", v, where(SKConv.forward), out)
        v_layer = layer(h)
        same = np.allclose(v_layer.numpy(), v.numpy(), atol=1e-5)
        print(f"\nlayer(X) equals the V assembled above: {same}", file=out)

    print("\n-- Backward: gradcheck of the whole layer in float64 (central differences)", file=out)
    small = SKConv(4, 4, kernel_sizes=(3, 5), groups=2, reduction=2, min_dim=2).double()
    xs = sk.Tensor(np.random.default_rng(1).standard_normal((3, 4, 5, 5)), requires_grad=True)
    ok = sk.gradcheck_module(small, xs, atol=1e-6, rtol=1e-4)
    n_params = len(list(small.parameters()))
    print(f"gradcheck over the input and all {n_params} parameters: {'passed' if ok else 'FAILED'} "
          f"<- {where(sk.gradcheck_module)}", file=out)
    return {"same": same, "gradcheck": ok, "attention_sum": (float(total.min()), float(total.max()))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (default: random data)")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    return walkthrough(args.data_dir, args.batch)


if __name__ == "__main__":
    main()
