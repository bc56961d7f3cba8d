"""Test accuracy of a model or a saved checkpoint: ``python -m skengine.evaluate --checkpoint run/best.npz``."""
import argparse
import sys

from .backend import array_module, resolve_device
from .data import CIFAR_MEAN_STD, DataLoader, class_names, load_cifar
from .models import create
from .serialization import load
from .training.evaluation import evaluate
from .training.report import confusion_table


def main(argv=None):
    p = argparse.ArgumentParser(prog="skengine-evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz or best.npz written by skengine.train")
    p.add_argument("--data-dir", help="folder holding the CIFAR data (default: the trainer's cache)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="average with the horizontally flipped image")
    args = p.parse_args(argv)
    ckpt = load(args.checkpoint)
    cfg = ckpt["config"]
    device = resolve_device(args.device)
    names = class_names(args.data_dir, cfg["dataset"])
    model = create(cfg["model"], num_classes=len(names), **cfg.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    model.to(device)
    x, y = load_cifar(args.data_dir, cfg["dataset"], train=False)
    xp = array_module(device)
    mean, std = CIFAR_MEAN_STD[cfg["dataset"]]
    result = evaluate(model, DataLoader(x, y, args.batch_size, mean=mean, std=std, xp=xp), tta=args.tta)
    print(confusion_table(result["confusion"], names), file=sys.stderr)
    print(f"{cfg['model']} ({args.checkpoint}): test loss {result['loss']:.4f}, "
          f"test accuracy {100 * result['acc']:.2f}% on {len(y)} images")
    return result


if __name__ == "__main__":
    main()
