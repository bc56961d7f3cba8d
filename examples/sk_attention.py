"""Where does a trained SK network put its attention?  Per layer, per class, and as objects grow.

    python examples/sk_attention.py --checkpoint runs/small/best.npz --data-dir DIR --out runs/attention
    python examples/sk_attention.py --timm-checkpoint skresnet18.safetensors --model skresnet18 \
        --images DIR_OF_JPEGS --out runs/attention_imagenet

For every SK layer it reports the mean attention weight on each path (kernel
size) over the test set, per class, and how that weight moves when the input
is enlarged: the centre crop of side H/s, rescaled to H x H (s = 1.0, 1.5,
2.0), makes every object s times larger.  The paper (Sec. 4.3, Fig. 3) finds
that larger objects shift attention towards the larger kernel in the early
layers; the last columns of the table say whether that holds here.

An enlargement also blurs: the crop's H/s pixels are stretched over H.  The
control ("blur" in the outputs) applies the same interpolation to the whole
image, shrunk to H/s and stretched back to H: the same loss of detail with
nothing enlarged.  A shift that the control shows too is the blur's, not the
size's; the column "size effect" is the enlargement's shift minus the blur's.

The second form runs the paper's own setting: a timm checkpoint (.safetensors
or .npz, loaded through skengine.interop.load_timm) of skresnet18/34 or
skresnext50_32x4d (the paper's SKNet-50) on a folder of images, each resized
and centre-cropped as timm's eval transform does (shorter side to 256 by
bicubic, centre 224, ImageNet mean and std; needs Pillow).  Without labels it
reports per layer and per scale only.
Writes attention.json, attention_by_class.csv (with labels), attention_scale.csv and the PNGs.
"""
import argparse
import csv
import json
import math
import os

import numpy as np

import skengine as sk
from skengine.data import CIFAR_MEAN_STD, class_names, load_cifar
from skengine.interop import load_timm, read_state
from skengine.models import collect_attention, create
from skengine.nn import SKConv
from skengine.serialization import atomic_write
from skengine.training import ConfigError, load_run
from skengine.training.report import pyplot

SCALES = (1.0, 1.5, 2.0)


def resample(images, out_hw, step, start=(0.0, 0.0)):
    """Bilinear sampling of uint8 images (N, C, H, W): output pixel i (of out_hw) reads the input at
    start + (i + 0.5) * step - 0.5 (pixel centres), borders clamped."""
    def grid(size, n_out, step, start):
        pos = start + (np.arange(n_out) + 0.5) * step - 0.5
        lo = np.clip(np.floor(pos).astype(int), 0, size - 1)
        return lo, np.minimum(lo + 1, size - 1), np.clip(pos - lo, 0, 1)

    (y0, y1, fy), (x0, x1, fx) = (grid(images.shape[2 + i], out_hw[i], step, start[i]) for i in (0, 1))
    img = images.astype(np.float32)
    top = img[:, :, y0][..., x0] * (1 - fx) + img[:, :, y0][..., x1] * fx
    bottom = img[:, :, y1][..., x0] * (1 - fx) + img[:, :, y1][..., x1] * fx
    out = top * (1 - fy)[:, None] + bottom * fy[:, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def enlarge(images, scale):
    """Centre crop of side H/scale, bilinearly resized back to H x W: objects look `scale` times larger."""
    n, c, h, w = images.shape
    if scale == 1.0:
        return images
    return resample(images, (h, w), 1 / scale, (h * (1 - 1 / scale) / 2, w * (1 - 1 / scale) / 2))


def blur(images, scale):
    """The control for ``enlarge``: the whole image shrunk to H/scale by the same interpolation and stretched
    back to H x W: an upsampling by ``scale`` as the enlargement's, with every object at its own size."""
    n, c, h, w = images.shape
    if scale == 1.0:
        return images
    small = (max(1, round(h / scale)), max(1, round(w / scale)))
    return resample(resample(images, small, h / small[0]), (h, w), small[0] / h)


def attention_per_image(model, images, mean, std, batch_size=250, channels=False):
    """{SK layer: (N, M) mean attention on each path, averaged over channels (``channels``: the whole
    (N, M, C) gates)}; images are uint8 (N, 3, H, W).  ValueError if some gate is NaN or inf: finite weights
    can compute them (a BatchNorm running_var below zero), and no statistic of them means anything."""
    scale = (1 / (255 * np.asarray(std))).astype(np.float32).reshape(1, -1, 1, 1)
    shift = (-np.asarray(mean) / np.asarray(std)).astype(np.float32).reshape(1, -1, 1, 1)
    model.eval()
    out = {}
    with sk.no_grad(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # said below, in one line
        for i in range(0, len(images), batch_size):
            model(sk.Tensor(images[i:i + batch_size] * scale + shift))
            for name, a in collect_attention(model).items():
                out.setdefault(name, []).append(a if channels else a.mean(axis=2))
    if not out:
        raise ValueError("the model has no SK layer (attention='sk') whose attention could be collected")
    out = {name: np.concatenate(parts) for name, parts in out.items()}
    for name, a in out.items():
        bad = int((~np.isfinite(a.reshape(len(a), -1))).any(axis=1).sum())
        if bad:
            raise ValueError(f"its network's attention in SK layer {name} is NaN or inf on {bad} of the {len(a)} "
                             f"images, though its weights are finite (a BatchNorm running_var below zero, say): "
                             f"it computes nothing meaningful")
    return out


def gate_statistics(a):
    """What the gates a (N, M, C) of one layer do: per path the mean and the spread over images and channels;
    ``dynamic``: the spread over images of a channel's gate, averaged over channels and paths (0: the gate is a
    per-channel constant, not attention to the input); ``dominant``: how often one path takes >= 90% of the
    gates' sum for a channel; ``saturated``: the fraction of gates below 0.05 or above 0.95; ``corr``: the
    correlation of the first two paths' gates over images and channels (-1 for a softmax of two paths)."""
    a = np.asarray(a, np.float64)
    total = a.sum(axis=1)
    share = a.max(axis=1) / np.where(total > 0, total, 1)
    x, y = a[:, 0].ravel(), a[:, 1].ravel() if a.shape[1] > 1 else None
    corr = None
    if y is not None and x.std() > 0 and y.std() > 0:
        corr = float(np.corrcoef(x, y)[0, 1])
    return {"mean": a.mean(axis=(0, 2)).tolist(), "std": a.std(axis=(0, 2)).tolist(),
            "dynamic": float(a.std(axis=0).mean()), "dominant": float((share >= 0.9).mean()),
            "saturated": float(((a < 0.05) | (a > 0.95)).mean()), "corr": corr}


def analyse(model, images, labels, names, mean, std, batch_size=250):
    """Mean attention per layer, per class (with labels), and per scale for the enlargement and its blur
    control, and what the gates do (gate_statistics).  ``labels`` None: no per-class numbers."""
    gates = attention_per_image(model, images, mean, std, batch_size, channels=True)
    base = {layer: a.mean(axis=2) for layer, a in gates.items()}
    layers = list(base)
    M = base[layers[0]].shape[1]
    by_class = {} if labels is None else {
        layer: np.stack([base[layer][labels == k].mean(axis=0) for k in range(len(names))]) for layer in layers}

    def per_scale(transform):
        runs = {s: attention_per_image(model, transform(images, s), mean, std, batch_size) if s != 1.0 else base
                for s in SCALES}
        return {layer: np.stack([runs[s][layer].mean(axis=0) for s in SCALES]).tolist() for layer in layers}

    return {"layers": layers, "paths": M, "mean": {layer: base[layer].mean(axis=0).tolist() for layer in layers},
            "by_class": {layer: v.tolist() for layer, v in by_class.items()},
            "by_scale": per_scale(enlarge), "by_blur": per_scale(blur),
            "gates": {layer: gate_statistics(a) for layer, a in gates.items()},
            "scales": list(SCALES), "classes": names, "images": int(len(images))}


def _write_csv(path, rows):
    """``rows`` as a CSV file, written whole or not at all (atomic_write)."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    atomic_write(path, write, ".csv")


def write_outputs(result, out):
    """attention.json, the CSVs and the plots in the folder ``out``; the JSON and the CSVs are each written whole
    or not at all (atomic_write), so a full disk leaves the files of an earlier analysis as they were (an OSError
    of one line); the plots are drawn straight into their files, as the trainer's curves.png is."""
    os.makedirs(out, exist_ok=True)

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
    atomic_write(os.path.join(out, "attention.json"), write_json, ".json")
    M, layers = result["paths"], result["layers"]
    if result["by_class"]:
        _write_csv(os.path.join(out, "attention_by_class.csv"),
                   [["layer", "class"] + [f"path{m + 1}" for m in range(M)]]
                   + [[layer, name] + [f"{v:.5f}" for v in row] for layer in layers
                      for name, row in zip(result["classes"], result["by_class"][layer])])
    gates = [["layer", "dynamic", "dominant", "saturated", "corr_path1_path2"]
             + [f"mean{m + 1}" for m in range(M)] + [f"std{m + 1}" for m in range(M)]]
    for layer in layers:
        g = result["gates"][layer]
        gates.append([layer] + [f"{g[k]:.5f}" if g[k] is not None else "" for k in
                                ("dynamic", "dominant", "saturated", "corr")]
                     + [f"{v:.5f}" for v in g["mean"] + g["std"]])
    _write_csv(os.path.join(out, "gates.csv"), gates)
    lines = [f"attention on the largest kernel; shift = s={result['scales'][-1]:g} minus s=1",
             f"{'SK layer':<28}" + "".join(f"  s={s:<4} " for s in result["scales"])
             + "  shift  blur shift  size effect"]
    rows = [["layer", "transform", "scale"] + [f"path{m + 1}" for m in range(M)]]
    for layer in layers:
        for kind in ("by_scale", "by_blur"):
            for s, row in zip(result["scales"], result[kind][layer]):
                rows.append([layer, "enlarge" if kind == "by_scale" else "blur", s] + [f"{v:.5f}" for v in row])
        big = [r[-1] for r in result["by_scale"][layer]]  # weight on the largest kernel
        blurred = [r[-1] for r in result["by_blur"][layer]]
        shift, blur_shift = big[-1] - big[0], blurred[-1] - blurred[0]
        lines.append(f"{layer:<28}" + "".join(f"  {b:.4f} " for b in big)
                     + f" {shift:+.4f}    {blur_shift:+.4f}      {shift - blur_shift:+.4f}")
    _write_csv(os.path.join(out, "attention_scale.csv"), rows)
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
    for i, layer in enumerate(layers):
        ax.plot(result["scales"], [r[-1] for r in result["by_scale"][layer]], "o-", color=f"C{i % 10}", label=layer)
        ax.plot(result["scales"], [r[-1] for r in result["by_blur"][layer]], "x:", color=f"C{i % 10}")
    ax.set(xlabel="object scale (centre crop enlarged); dotted: blur alone", ylabel="attention on the largest kernel",
           title="Attention vs object size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "attention_scale.png"), dpi=100)
    plt.close(fig)


IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # timm's IMAGENET_DEFAULT_MEAN / _STD
TIMM_MODELS = ("skresnet18", "skresnet34", "skresnext50_32x4d")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_images(folder, size=224, crop_pct=0.875, limit=None):
    """The images in ``folder`` (sorted by name) as uint8 (N, 3, size, size), as timm's eval transform for the
    SK networks makes them: the shorter side resized to floor(size / crop_pct) by bicubic interpolation,
    then the centre size x size (torchvision's Resize and CenterCrop on PIL images).  An image whose resized
    whole would have more pixels than Pillow lets a file have (Image.MAX_IMAGE_PIXELS, about 89M: an aspect
    ratio beyond about 1365:1, as 1 x 30000 resized to 7,680,000 x 256) is refused, as Pillow refuses a
    decompression bomb."""
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("reading images needs Pillow: pip install pillow") from None
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))[:limit]
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {folder}")
    short, out = math.floor(size / crop_pct), []
    for name in files:
        path = os.path.join(folder, name)
        try:  # a truncated or foreign file, or a decompression bomb (Pillow's limit, about 179M pixels)
            with Image.open(path) as img:
                img = img.convert("RGB")
        except Exception as e:  # Pillow's decoders raise many types: each is this file's fault
            raise ValueError(f"{path}: cannot read it as an image ({type(e).__name__}: {e})") from None
        w, h = img.size
        new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        if Image.MAX_IMAGE_PIXELS and new[0] * new[1] > Image.MAX_IMAGE_PIXELS:
            raise ValueError(f"{path}: {w} x {h} pixels, resized to {new[0]} x {new[1]} before its centre is "
                             f"cropped: more than the {Image.MAX_IMAGE_PIXELS} pixels Pillow allows an image")
        img = img.resize(new, Image.BICUBIC)
        left, top = int(round((new[0] - size) / 2)), int(round((new[1] - size) / 2))
        out.append(np.asarray(img.crop((left, top, left + size, top + size))).transpose(2, 0, 1))
    return np.stack(out)


def timm_model(name, path):
    """An skengine ``name`` with a timm checkpoint's weights (its class count read from the file); weights that
    are not floating point, or hold NaN or inf, are refused (ValueError, TypeError)."""
    state = read_state(path)
    fc = np.shape(state["fc.weight"]) if "fc.weight" in state else (1000, 0)
    if len(fc) != 2:
        raise ValueError(f"its fc.weight has shape {fc}, not (classes, features) as timm's {name} has")
    model = load_timm(create(name, num_classes=fc[0]), state)
    nonfinite = next((k for k, v in state.items() if v.dtype.kind == "f" and not np.isfinite(v).all()), None)
    if nonfinite is not None:
        raise ValueError(f"its weights hold NaN or inf (the first: {nonfinite!r})")
    return model


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a user's mistake: one line on stderr, exit code 2 (as skengine.evaluate)
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def main(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a run of skengine.train: its folder (its best.npz), best.npz or "
                   "checkpoint.npz")
    p.add_argument("--data-dir", help="folder holding the CIFAR data (default: the trainer's cache)")
    p.add_argument("--timm-checkpoint", help="a timm state dict (.safetensors or .npz) of --model")
    p.add_argument("--model", choices=TIMM_MODELS, help="the timm network the --timm-checkpoint holds")
    p.add_argument("--images", help="with --timm-checkpoint: a folder of images (no labels)")
    p.add_argument("--limit", type=int, help="use the first N test images (or files)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 250; 16 with --images)")
    p.add_argument("--out", default="runs/attention")
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.timm_checkpoint is None):
        p.error("give --checkpoint (a run of skengine.train) or --timm-checkpoint with --model and --images")
    for name in ("limit", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    unwritable = _unwritable(args.out)
    if unwritable:  # before the analysis, which can take minutes
        p.error(f"--out {args.out}: {unwritable}")
    try:  # a file that is not there or not what it should be: one line naming it
        if args.timm_checkpoint is not None:
            if args.model is None or args.images is None:
                p.error("--timm-checkpoint needs --model (" + ", ".join(TIMM_MODELS) + ") and --images")
            where = source = f"--timm-checkpoint {args.timm_checkpoint}"
            model = timm_model(args.model, args.timm_checkpoint)
            where = f"--images {args.images}"
            images = load_images(args.images, limit=args.limit)
            labels, names, mean_std, batch = None, [], IMAGENET_MEAN_STD, args.batch_size or 16
        else:
            try:
                model, cfg, path, _ = load_run(args.checkpoint)
            except ConfigError as e:  # one line that names the file and why
                p.error(f"--checkpoint {e}")
            where = source = f"--checkpoint {path}"
            if not any(isinstance(m, SKConv) for m in model.modules()):
                p.error(f"{source}: its model has no SK layer to look at (model_kwargs {cfg.get('model_kwargs', {})})")
            where = f"--data-dir {args.data_dir}" if args.data_dir else "the CIFAR data"
            names = class_names(args.data_dir, cfg["dataset"])
            images, labels = load_cifar(args.data_dir, cfg["dataset"], train=False)
            if args.limit:
                images, labels = images[:args.limit], labels[:args.limit]
            mean_std, batch = CIFAR_MEAN_STD[cfg["dataset"]], args.batch_size or 250
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        p.error(f"{where}: {e}")
    try:
        result = analyse(model, images, labels, names, *mean_std, batch)
    except ValueError as e:  # gates of NaN or inf
        p.error(f"{source}: {e}")
    try:
        print(write_outputs(result, args.out))
    except OSError as e:  # a full disk (atomic_write's error names the folder and the space), a folder taken away
        p.exit(1, f"{p.prog}: cannot write --out {args.out}: {' '.join(str(e).split())}\n")
    return result


def _unwritable(out):
    """Why ``out`` cannot be the output folder (a file, or a path under one), or None."""
    if os.path.lexists(out) and not os.path.isdir(out):
        return "is a file (or a broken link), not a folder"
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write into {existing}"
    return None


if __name__ == "__main__":
    main()
