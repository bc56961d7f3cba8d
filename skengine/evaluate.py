"""Test accuracy of a model or a saved checkpoint: ``python -m skengine.evaluate --checkpoint run/best.npz``."""
import argparse
import os
import pickle
import sys

import numpy as np

from .backend import array_module, resolve_device
from .data import CIFAR_MEAN_STD, DataLoader, class_names, dataset_root, load_cifar
from .training.config import ConfigError
from .training.evaluation import evaluate
from .training.extensions import FiniteLogits
from .training.report import confusion_table
from .training.runs import load_run


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a user's mistake: one line on stderr, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    p = _Parser(prog="skengine-evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True,
                   help="best.npz or checkpoint.npz written by skengine.train, or the run's folder (its best.npz)")
    p.add_argument("--data-dir", help="folder holding the CIFAR data (default: the trainer's cache)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download the official archive if the data is absent")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="average with the horizontally flipped image")
    p.add_argument("--tta-translate", action=argparse.BooleanOptionalAction, default=False,
                   help="with --tta, also the image moved one pixel each way, and its mirror (6 passes)")
    p.add_argument("--limit-test", type=int, help="test on the first N images only")
    return p


def main(argv=None):
    """The command: prints the confusion table (stderr) and the accuracy; a mistake (a missing or foreign
    checkpoint, one whose logits are not finite, missing data, no GPU for --device cuda) is one line on stderr
    with exit code 2; Ctrl-C is one line with exit code 130."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.tta_translate and not args.tta:
        p.error("--tta-translate adds views to --tta's: give both")
    if args.batch_size < 1:
        p.error(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if args.limit_test is not None and args.limit_test < 1:
        p.error(f"--limit-test must be an integer >= 1, got {args.limit_test}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        p.error(f"--data-dir {args.data_dir} is not a folder")
    try:  # a run folder: its best model, else its last checkpoint
        net, cfg, path, _ = load_run(args.checkpoint)
    except ConfigError as e:
        p.error(f"--checkpoint {e}")
    try:
        device = resolve_device(args.device)
        root = dataset_root(args.data_dir, cfg["dataset"], args.download)
        x, y = (a[:args.limit_test] for a in load_cifar(root, cfg["dataset"], train=False))
        names = class_names(root, cfg["dataset"])
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as e:  # no GPU, no data, a bad download
        p.error(str(e))
    net.to(device)
    mean, std = CIFAR_MEAN_STD[cfg["dataset"]]
    loader = DataLoader(x, y, args.batch_size, mean=mean, std=std, xp=array_module(device))
    watched = FiniteLogits(net)  # logits of NaN or inf are noted and counted as zeros: a line below, not a traceback
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = evaluate(watched, loader, tta=args.tta, translate=args.tta_translate)
    except KeyboardInterrupt:
        p.exit(130, "skengine-evaluate: interrupted\n")
    if watched.bad:
        p.error(f"--checkpoint {path}: its network's logits are NaN or inf on the test images, though its weights "
                f"are finite (a BatchNorm running_var below zero, say): it computes nothing meaningful")
    print(confusion_table(result["confusion"], names), file=sys.stderr)
    print(f"{cfg['model']} ({path}): test loss {result['loss']:.4f}, "
          f"test accuracy {100 * result['acc']:.2f}% on {len(y)} images")
    return result


if __name__ == "__main__":
    main()
