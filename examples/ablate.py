"""Ablations with equal budgets: the same network, recipe and epochs, only the attention changes.

    python examples/ablate.py --data-dir DIR --model sknet_cifar_tiny --epochs 5 --seeds 0 1 2 --out runs/ablate

Variants (each trained with skengine.train, one run per seed):
  sk_softmax   SK, softmax across paths (the paper)          sk_sigmoid  SK, independent sigmoid gates
  se           SE block instead of SK (one 3x3 path)           none        no attention (one 3x3 path)
  sk_m2 / sk_m3  two vs three paths (3,5 / 3,5,7), full input per path, so M is the only difference
Writes ablation.csv, ablation.md and ablation.png to --out: test accuracy mean +- std, parameters,
multiply-adds per image and training images/s.
"""
import argparse
import csv
import os
import sys

import numpy as np

from skengine import training as trainer
from skengine.models import create
from skengine.summary import summary
from skengine.training.report import pyplot

VARIANTS = {
    "sk_softmax": {"sk_kwargs": {"attention": "softmax"}},
    "sk_sigmoid": {"sk_kwargs": {"attention": "sigmoid"}},
    "se": {"attention": "se"},
    "none": {"attention": "none"},
    "sk_m2": {"sk_kwargs": {"kernel_sizes": [3, 5], "split_input": False}},
    "sk_m3": {"sk_kwargs": {"kernel_sizes": [3, 5, 7], "split_input": False}},
}


def run(args):
    rows = []
    for name in args.variants:
        kwargs = VARIANTS[name]
        model = create(args.model, num_classes=10, **kwargs)
        info = summary(model, (3, 32, 32))
        accs, speeds = [], []
        for seed in args.seeds:
            out = os.path.join(args.out, f"{name}-seed{seed}")
            print(f"== {name} seed {seed} -> {out}", file=sys.stderr)
            result = trainer.train(dict(model=args.model, model_kwargs=kwargs, seed=seed, epochs=args.epochs,
                                        batch_size=args.batch_size, lr=args.lr, data_dir=args.data_dir,
                                        limit_train=args.limit_train, limit_test=args.limit_test,
                                        device=args.device, download=False, out=out, tta=False,
                                        overwrite=True))  # each run's folder is this grid's own: rerun, replaced
            accs.append(result["test_acc"])
            speeds.append(result["images_per_s"])
        rows.append({"variant": name, "model_kwargs": kwargs, "seeds": len(accs),
                     "acc_mean": 100 * float(np.mean(accs)), "acc_std": 100 * float(np.std(accs)),
                     "accs": " ".join(f"{100 * a:.2f}" for a in accs), "params": info.total_params,
                     "macs": info.total_macs, "images_per_s": float(np.mean(speeds))})
    return rows


def write(rows, args):
    os.makedirs(args.out, exist_ok=True)
    keys = ["variant", "acc_mean", "acc_std", "accs", "seeds", "params", "macs", "images_per_s", "model_kwargs"]
    with open(os.path.join(args.out, "ablation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    budget = (f"{args.model}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
              f"{args.limit_train or 'all'} training / {args.limit_test or 'all'} test images, "
              f"seeds {' '.join(map(str, args.seeds))}, device {args.device}")
    lines = [f"Budget: {budget}", "",
             "| variant | test acc % (mean +- std) | runs | params | MACs / image | train img/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['acc_mean']:.2f} +- {r['acc_std']:.2f} ({r['accs']}) | {r['seeds']} | "
              f"{r['params']:,} | {r['macs'] / 1e6:.1f} M | {r['images_per_s']:.0f} |" for r in rows]
    table = "\n".join(lines)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(table + "\n")
    plt = pyplot("ablation.png")
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar([r["variant"] for r in rows], [r["acc_mean"] for r in rows],
               yerr=[r["acc_std"] for r in rows], capsize=4)
        lo = min(r["acc_mean"] - r["acc_std"] for r in rows)
        ax.set(ylabel="test accuracy (%)", ylim=(max(0, lo - 5), None), title=f"Ablation: {args.model}")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "ablation.png"), dpi=100)
        plt.close(fig)
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--model", default="sknet_cifar_tiny")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/ablate")
    args = p.parse_args(argv)
    rows = run(args)
    table = write(rows, args)
    print(table)
    return rows


if __name__ == "__main__":
    main()
