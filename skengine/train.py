"""Train an SK model on CIFAR-10/100: ``python -m skengine.train`` (or ``skengine-train``).

With no arguments: the default small SK model on CIFAR-10 (downloaded into
the cache if absent), on CUDA if available, else the CPU.  Every epoch ends
with a test pass, a row in ``metrics.csv`` and an atomic ``checkpoint.npz``
(model, optimizer, schedule, data order and RNG state, so ``--resume``
continues bit for bit); Ctrl-C finishes the current step, checkpoints and
exits; a NaN/inf loss stops the run and leaves the last good checkpoint.
"""
import argparse
import json

from .training.loop import DEFAULTS, train


def build_parser():
    p = argparse.ArgumentParser(prog="skengine-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="any name from skengine.models.list_models()")
    p.add_argument("--model-kwargs", type=json.loads, metavar="JSON",
                   help='constructor options, e.g. \'{"attention": "se"}\' or '
                        '\'{"sk_kwargs": {"attention": "sigmoid"}}\'')
    p.add_argument("--dataset", choices=["cifar10", "cifar100"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--wd", type=float, help="weight decay (not applied to BN parameters and biases)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step"])
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up of the cosine schedule")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--cutout", type=int, help="cutout square size (0: off)")
    p.add_argument("--ema", type=float, help="EMA decay of the weights used for testing (0: off)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, help="flip test-time augmentation")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit-train", type=int, help="train on the first N images only")
    p.add_argument("--limit-test", type=int, help="test on the first N images only")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--processes", help="data-parallel processes, each training on its shard of every batch "
                                       "(auto: on the CPU one per BLAS thread, at most one per 64 images; "
                                       "with --resume: the run's own count)")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (default: $SKENGINE_DATA "
                                      "or ~/.cache/skengine)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction,
                   help="download the official archive if the data is absent")
    p.add_argument("--out", help="output folder")
    p.add_argument("--resume", help="checkpoint.npz (or its folder) to continue from")
    p.set_defaults(**DEFAULTS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    result = train(vars(args))
    if result:
        tta = result.get("test_acc_tta")
        print(f"final test accuracy: {100 * result['test_acc']:.2f}%"
              + (f", {100 * tta:.2f}% with flip TTA" if tta is not None else ""))


if __name__ == "__main__":
    main()
