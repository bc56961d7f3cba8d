"""Where does a trained SK network put its attention?  Per layer, per class, and as objects grow.

    python examples/sk_attention.py --checkpoint runs/small/best.npz --data-dir DIR --out runs/attention

For every SK layer it reports the mean attention weight on each path (kernel
size) over the test set, per class, and how that weight moves when the input
is enlarged: the centre crop of side 32/s, rescaled to 32x32 (s = 1.0, 1.5,
2.0), makes every object s times larger.  The paper (Sec. 4.3, Fig. 3) finds
that larger objects shift attention towards the larger kernel in the early
layers; the last columns of the table say whether that holds here.
Writes attention.json, attention_by_class.csv, attention_scale.csv and two PNGs.
"""
import argparse
import csv
import json
import os

import numpy as np

import skengine as sk
from skengine.data import CIFAR_MEAN_STD, class_names, load_cifar
from skengine.models import collect_attention, create
from skengine.training.report import pyplot

SCALES = (1.0, 1.5, 2.0)


def enlarge(images, scale):
    """Centre crop of side H/scale, bilinearly resized back to H x W: objects look `scale` times larger."""
    n, c, h, w = images.shape
    if scale == 1.0:
        return images

    def grid(size):  # sample positions of the output pixels inside the crop, and their neighbours
        pos = (np.arange(size) + 0.5) / scale - 0.5 + size * (1 - 1 / scale) / 2
        lo = np.clip(np.floor(pos).astype(int), 0, size - 1)
        return lo, np.minimum(lo + 1, size - 1), np.clip(pos - lo, 0, 1)

    (y0, y1, fy), (x0, x1, fx) = grid(h), grid(w)
    img = images.astype(np.float32)
    top = img[:, :, y0][..., x0] * (1 - fx) + img[:, :, y0][..., x1] * fx
    bottom = img[:, :, y1][..., x0] * (1 - fx) + img[:, :, y1][..., x1] * fx
    out = top * (1 - fy)[:, None] + bottom * fy[:, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def attention_per_image(model, images, mean, std, batch_size=250):
    """{SK layer: (N, M) mean attention on each path, averaged over channels}."""
    scale = (1 / (255 * np.asarray(std))).astype(np.float32).reshape(1, -1, 1, 1)
    shift = (-np.asarray(mean) / np.asarray(std)).astype(np.float32).reshape(1, -1, 1, 1)
    model.eval()
    out = {}
    with sk.no_grad():
        for i in range(0, len(images), batch_size):
            model(sk.Tensor(images[i:i + batch_size] * scale + shift))
            for name, a in collect_attention(model).items():
                out.setdefault(name, []).append(a.mean(axis=2))
    if not out:
        raise ValueError("the model has no SK layer (attention='sk') whose attention could be collected")
    return {name: np.concatenate(parts) for name, parts in out.items()}


def analyse(model, images, labels, names, mean, std):
    base = attention_per_image(model, images, mean, std)
    layers = list(base)
    M = base[layers[0]].shape[1]
    by_class = {layer: np.stack([base[layer][labels == k].mean(axis=0) for k in range(len(names))])
                for layer in layers}  # (classes, M)
    by_scale = {s: attention_per_image(model, enlarge(images, s), mean, std) if s != 1.0 else base for s in SCALES}
    scale_table = {layer: np.stack([by_scale[s][layer].mean(axis=0) for s in SCALES]) for layer in layers}
    return {"layers": layers, "paths": M, "mean": {layer: base[layer].mean(axis=0).tolist() for layer in layers},
            "by_class": {layer: v.tolist() for layer, v in by_class.items()},
            "by_scale": {layer: v.tolist() for layer, v in scale_table.items()},
            "scales": list(SCALES), "classes": names, "images": int(len(images))}


def write_outputs(result, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "attention.json"), "w") as f:
        json.dump(result, f, indent=1)
    M, layers = result["paths"], result["layers"]
    with open(os.path.join(out, "attention_by_class.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "class"] + [f"path{m + 1}" for m in range(M)])
        for layer in layers:
            for name, row in zip(result["classes"], result["by_class"][layer]):
                w.writerow([layer, name] + [f"{v:.5f}" for v in row])
    lines = [f"{'SK layer':<28}" + "".join(f"  s={s:<4} " for s in result["scales"]) + " shift to larger kernel"]
    with open(os.path.join(out, "attention_scale.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "scale"] + [f"path{m + 1}" for m in range(M)])
        for layer in layers:
            rows = result["by_scale"][layer]
            for s, row in zip(result["scales"], rows):
                w.writerow([layer, s] + [f"{v:.5f}" for v in row])
            big = [r[-1] for r in rows]  # weight on the largest kernel
            lines.append(f"{layer:<28}" + "".join(f"  {b:.4f} " for b in big) + f" {big[-1] - big[0]:+.4f}")
    _plot(result, out)
    return "\n".join(lines)


def _plot(result, out):
    plt = pyplot("the attention plots")
    if plt is None:
        return
    layers, M = result["layers"], result["paths"]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(layers)), 4))
    x = np.arange(len(layers))
    for m in range(M):
        ax.bar(x + (m - (M - 1) / 2) * 0.8 / M, [result["mean"][lay][m] for lay in layers], 0.8 / M,
               label=f"path {m + 1}")
    ax.set(xticks=x, ylabel="mean attention weight", title="SK attention per layer (test set)")
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "attention_layers.png"), dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for layer in layers:
        ax.plot(result["scales"], [r[-1] for r in result["by_scale"][layer]], "o-", label=layer)
    ax.set(xlabel="object scale (centre crop enlarged)", ylabel="attention on the largest kernel",
           title="Attention vs object size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "attention_scale.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="best.npz or checkpoint.npz from skengine.train")
    p.add_argument("--data-dir", help="folder holding the CIFAR data (default: the trainer's cache)")
    p.add_argument("--limit", type=int, help="use the first N test images")
    p.add_argument("--out", default="runs/attention")
    args = p.parse_args(argv)
    ckpt = sk.load(args.checkpoint)
    cfg = ckpt["config"]
    names = class_names(args.data_dir, cfg["dataset"])
    model = create(cfg["model"], num_classes=len(names), **cfg.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    images, labels = load_cifar(args.data_dir, cfg["dataset"], train=False)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    result = analyse(model, images, labels, names, *CIFAR_MEAN_STD[cfg["dataset"]])
    print(write_outputs(result, args.out))
    return result


if __name__ == "__main__":
    main()
