"""The trainer against PyTorch: images/s of skengine's fast recipe (``--recipe fast``, data parallel over the
CPU's processes) and of the same network and recipe in PyTorch (airbench's loop moved to the CPU: float32, one
process with a thread per core), in alternating rounds on the same CIFAR-10 images.  The fast recipe was the
default command until 2026-12-07; the default now (``airbench93_sk``) adds Lookahead, decayed BN biases and a
dropped short batch, which this loop does not have: its end-to-end match is ``airbench_torch.py``, PyTorch's
airbench93 on the same machine, against which the default command's wall time is measured.

    python benchmarks/trainer.py --data-dir DIR                                  # the SK network
    python benchmarks/trainer.py --data-dir DIR --model-kwargs '{"attention": "none"}'   # airbench93's trunk
    python benchmarks/trainer.py --data-dir DIR --limit-train 10240 --epochs 3 --rounds 2
    python benchmarks/trainer.py --data-dir DIR --whiten-bias-epochs 1   # epochs 2-3: as the default command's last 12

Each contender runs in a fresh process per round (as a user starts it): skengine as ``python -m skengine.train``
(``--recipe fast --no-tta``, the data and run length given), PyTorch as this file with ``--torch``.
Both train the recipe's batches (512) with its augmentation (alternating flips, 2-pixel reflected translations),
label smoothing 0.2, Nesterov SGD with BN biases at 64x, the linear schedule, and test every epoch; the rate is
the images of an epoch over its training time (the test pass not counted).  A fresh PyTorch process runs slower
until its first test pass (issue 29): the table gives epoch 1 and the mean of the later epochs apart.  torch is
a benchmark-only install (a venv of your own), never a dependency of the package.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def torch_run(args):
    """One PyTorch run: the twin of sknet_cifar_fast (skengine's weights, whitening fitted as the trainer fits
    it), the fast recipe's loop; prints one JSON line per epoch."""
    import torch
    import torch.nn.functional as TF

    import skengine as sk
    from skengine.data import CIFAR_MEAN_STD, load_cifar
    from skengine.models import create
    from skengine.training.config import settings_of, step_lr
    from skengine.training.recipe import Schedule, fit_whitening
    from train_step import torch_twin

    torch.set_num_threads(args.threads)
    cfg = settings_of({"recipe": "fast", "epochs": args.epochs, "model_kwargs": args.model_kwargs,
                       **({} if args.whiten_bias_epochs is None else {"whiten_bias_epochs": args.whiten_bias_epochs})})
    x, y = load_cifar(os.path.join(args.data_dir, "cifar-10-batches-py"), "cifar10", train=True)
    xt, yt = load_cifar(os.path.join(args.data_dir, "cifar-10-batches-py"), "cifar10", train=False)
    x, y, xt, yt = x[:args.limit_train], y[:args.limit_train], xt[:args.limit_test], yt[:args.limit_test]
    mean, std = CIFAR_MEAN_STD["cifar10"]
    sk.manual_seed(0)
    model = create(cfg["model"], num_classes=10, **cfg["model_kwargs"])
    fit_whitening(model, cfg, x, mean, std)
    net = torch_twin(model).to(memory_format=torch.channels_last)

    def normalise(images):
        t = torch.from_numpy(images).float().div_(255)
        return ((t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).contiguous(
            memory_format=torch.channels_last)
    train_x, train_y, test_x, test_y = normalise(x), torch.from_numpy(y), normalise(xt), torch.from_numpy(yt)
    lr, batch = step_lr(cfg), cfg["batch_size"]
    whiten_bias = net.whiten.bias
    decay = [p for n, p in net.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.requires_grad and p.ndim <= 1 and p is not whiten_bias]
    opt = torch.optim.SGD([{"params": decay, "lr": lr, "weight_decay": cfg["wd"]},
                           {"params": no_decay, "lr": lr * cfg["bias_lr_scale"], "weight_decay": 0.0},
                           {"params": [whiten_bias], "lr": lr, "weight_decay": cfg["wd"]}],
                          lr=lr, momentum=cfg["momentum"], nesterov=True)
    steps = -(-len(train_x) // batch)
    total = cfg["epochs"] * steps
    stop = Schedule(cfg["schedule"], total, cfg["warmup"], stop=round(cfg["whiten_bias_epochs"] * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [Schedule(cfg["schedule"], total, cfg["warmup"])] * 2 + [stop])
    gen = torch.Generator().manual_seed(0)
    pad = cfg["crop_pad"]
    mirrored = torch.rand(len(train_x), generator=gen) < 0.5  # airbench's alternating flip: these, then the others
    for epoch in range(1, cfg["epochs"] + 1):
        net.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train_x), generator=gen)
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb = train_x[idx]
            flip = (mirrored[idx] ^ (epoch % 2 == 0)).view(-1, 1, 1, 1)
            padded = TF.pad(torch.where(flip, xb.flip(-1), xb), (pad,) * 4, mode="reflect")
            shifts = torch.randint(0, 2 * pad + 1, (len(idx), 2), generator=gen)  # per image, as airbench's crops
            xb = torch.empty_like(xb)
            for dy in range(2 * pad + 1):
                for dx in range(2 * pad + 1):
                    these = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().flatten()
                    xb[these] = padded[these, :, dy:dy + 32, dx:dx + 32]
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = TF.cross_entropy(net(xb), train_y[idx], label_smoothing=cfg["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        seconds = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            acc = float((net(test_x).argmax(1) == test_y).float().mean())
        print(json.dumps({"epoch": epoch, "images_per_s": len(train_x) / seconds, "test_acc": acc}), flush=True)


def skengine_run(args, out):
    """One run of skengine's fast recipe; the per-epoch rows of its metrics.csv."""
    cmd = [sys.executable, "-m", "skengine.train", "--recipe", "fast", "--data-dir", args.data_dir, "--epochs",
           str(args.epochs), "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test), "--no-tta",
           "--out", out, "--overwrite", "--no-download", "--model-kwargs", json.dumps(args.model_kwargs)]
    if args.whiten_bias_epochs is not None:
        cmd += ["--whiten-bias-epochs", str(args.whiten_bias_epochs)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    with open(os.path.join(out, "metrics.csv")) as f:
        return [{"epoch": int(r["epoch"]), "images_per_s": float(r["images_per_s"]), "test_acc": float(r["test_acc"])}
                for r in csv.DictReader(f)]


def torch_subprocess(args):
    cmd = [sys.executable, __file__, "--torch", "--data-dir", args.data_dir, "--epochs", str(args.epochs),
           "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test), "--threads",
           str(args.threads), "--model-kwargs", json.dumps(args.model_kwargs)]
    if args.whiten_bias_epochs is not None:
        cmd += ["--whiten-bias-epochs", str(args.whiten_bias_epochs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary(rows):
    later = [r["images_per_s"] for r in rows[1:]]
    return rows[0]["images_per_s"], (float(np.mean(later)) if later else float("nan")), rows[-1]["test_acc"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit-train", type=int, default=10240)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's threads")
    p.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON")
    p.add_argument("--whiten-bias-epochs", type=float, default=None,
                   help="epochs the whitening bias learns (the recipe's: 3, all of a 3-epoch run; the default command "
                        "trains 12 of its 15 epochs with it stopped, which skengine computes no gradient for)")
    p.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch:
        return torch_run(args)
    import torch

    from common import cpu_model
    print(f"{cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}, torch {torch.__version__} "
          f"({args.threads} threads); sknet_cifar_fast {json.dumps(args.model_kwargs)}, the fast recipe, "
          f"{args.limit_train} images x {args.epochs} epochs a run, the whitening bias learning for "
          f"{args.whiten_bias_epochs if args.whiten_bias_epochs is not None else 'the recipe'}'s epochs")
    print("| round | contender | epoch 1 img/s | later epochs img/s | test acc |")
    print("| ---: | --- | ---: | ---: | ---: |")
    later = {"skengine": [], "torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1, args.rounds + 1):
            for name in ("skengine", "torch"):
                rows = skengine_run(args, os.path.join(tmp, "run")) if name == "skengine" else torch_subprocess(args)
                first, rest, acc = summary(rows)
                later[name].append(rest)
                print(f"| {r} | {name} | {first:.0f} | {rest:.0f} | {100 * acc:.1f}% |", flush=True)
    ratios = [s / t for s, t in zip(later["skengine"], later["torch"])]
    print(f"skengine / PyTorch, later epochs: {', '.join(f'{x:.2f}x' for x in ratios)} (per round)")


if __name__ == "__main__":
    main()
