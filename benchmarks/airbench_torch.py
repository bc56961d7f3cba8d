"""PyTorch's airbench93 and airbench94 (Keller Jordan, github.com/KellerJordan/cifar10-airbench, airbench/
lib_airbench9{3,4}.py and utils.py) moved to the CPU: the reference that skengine's ``--recipe airbench93`` and
its SK recipes are measured against, on the same images and machine.

    /path/to/torch-venv/bin/python benchmarks/airbench_torch.py --data-dir DIR --seed 0            # airbench93
    /path/to/torch-venv/bin/python benchmarks/airbench_torch.py --data-dir DIR --variant 94 --seed 0

Written anew from airbench's code and kept to it step by step: the same network (whitening 2x2 conv fitted to
the first 5,000 training images by the uncentred patch covariance, three conv-pool-BN-GELU-conv-BN-GELU groups,
max pool, linear, x 1/9), the loss summed over batches of 1024 with label smoothing 0.2, Nesterov SGD at airbench's
decoupled lr 11.5 and decay 0.0153 per 1024 images (BN biases at 64x the rate, decayed by the same amount a step),
the schedule from 0.2x up to 1x over 23% of the steps then down to 0.07x, Lookahead every 5 steps (the model's
floating-point state, BN statistics included, with airbench's decay 0.95^5 * progress^3; the run ends on the slow
weights), the whitening bias trained for 3 epochs, the last partial batch of each epoch dropped, alternating
flips over a random first flip, 2-pixel reflected translations, and flip + translate TTA (level 2).

What differs, as the CPU needs: float32 everywhere (airbench trains in float16 on a GPU), channels_last
tensors, ``--threads`` threads, and a seed (airbench takes none).  The wall time is the process's, from before
the data is read to after the TTA pass; airbench's own ``total_time_seconds`` (whitening + training + the TTA
pass, not the per-epoch tests) is printed too.  torch is a benchmark-only install, never a package dependency.
"""
import argparse
import json
import math
import os
import pickle
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

START = time.perf_counter()
VARIANTS = {"93": dict(epochs=11.0, widths=(64, 128, 128)), "94": dict(epochs=9.9, widths=(64, 256, 256))}
HYP = dict(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0, label_smoothing=0.2,
           whiten_bias_epochs=3, translate=2, bn_momentum=0.6, scaling_factor=1 / 9, lr_peak=0.23, lr_end=0.07)
MEAN, STD = torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2470, 0.2435, 0.2616))


def load(data_dir, train):
    """(images float in [0, 1], N x 3 x 32 x 32 channels_last; labels int64) of the official pickles."""
    folder = os.path.join(data_dir, "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = [], []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            d = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[b"labels"], np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last), torch.from_numpy(np.concatenate(ys))


def normalize(x):
    return (x - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, n):
        super().__init__(n, eps=1e-12, momentum=1 - HYP["bn_momentum"])
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, cin, cout, kernel_size=3, padding="same", bias=False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(cin, cout), nn.MaxPool2d(2), BatchNorm(cout)
        self.conv2, self.norm2, self.activ = Conv(cout, cout), BatchNorm(cout), nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def make_net(widths):
    net = nn.Sequential(Conv(3, 24, 2, padding=0, bias=True), nn.GELU(), ConvGroup(24, widths[0]),
                        ConvGroup(widths[0], widths[1]), ConvGroup(widths[1], widths[2]), nn.MaxPool2d(3),
                        nn.Flatten(), nn.Linear(widths[2], 10, bias=False), Mul(HYP["scaling_factor"]))
    net[0].weight.requires_grad = False
    return net.to(memory_format=torch.channels_last)


def init_whitening(layer, images, eps=5e-4):
    """airbench's: the eigenvectors of the uncentred covariance of the 2x2 patches, scaled, both signs."""
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.reshape(len(patches), -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.flip(0)
    scaled = eigenvectors.reshape(c * h * w, c, h, w) / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


def crop(padded, size=32):
    """Each image translated by its own random shift in [-r, r]^2 (airbench's batch_crop for r <= 2)."""
    r = (padded.size(-1) - size) // 2
    shifts = torch.randint(-r, r + 1, size=(len(padded), 2))
    out = torch.empty((len(padded), 3, size, size), dtype=padded.dtype).contiguous(memory_format=torch.channels_last)
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[mask] = padded[mask, :, r + sy:r + sy + size, r + sx:r + sx + size]
    return out


def batches(images, labels, epoch, state, batch_size):
    """airbench's CifarLoader with altflip: the first epoch flips a random half once (kept), every odd epoch
    mirrors all; random translations; shuffled; the last partial batch dropped."""
    if epoch == 0:
        flip = (torch.rand(len(images)) < 0.5).view(-1, 1, 1, 1)
        flipped = torch.where(flip, images.flip(-1), images)
        state["pad"] = F.pad(flipped, (HYP["translate"],) * 4, "reflect")
    x = crop(state["pad"])
    if epoch % 2 == 1:
        x = x.flip(-1)
    order = torch.randperm(len(x))
    for i in range(len(x) // batch_size):
        idx = order[i * batch_size:(i + 1) * batch_size]
        yield x[idx].contiguous(memory_format=torch.channels_last), labels[idx]


def infer(model, images, tta):
    def mirror(x):
        return 0.5 * model(x) + 0.5 * model(x.flip(-1))

    def mirror_translate(x):
        padded = F.pad(x, (1,) * 4, "reflect")
        shifted = torch.stack([mirror(padded[:, :, 0:32, 0:32]), mirror(padded[:, :, 2:34, 2:34])]).mean(0)
        return 0.5 * mirror(x) + 0.5 * shifted

    model.eval()
    with torch.no_grad():
        fn = mirror_translate if tta else model
        return torch.cat([fn(x.contiguous(memory_format=torch.channels_last)) for x in images.split(2000)])


def accuracy(model, images, labels, tta):
    return (infer(model, images, tta).argmax(1) == labels).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("--variant", choices=tuple(VARIANTS), default="93")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--epochs", type=float, help="the run's length (default: the variant's, 11 or 9.9)")
    p.add_argument("--results", help="append the run's JSON line to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    epochs, widths = args.epochs or VARIANTS[args.variant]["epochs"], VARIANTS[args.variant]["widths"]
    train_x, train_y = load(args.data_dir, True)
    test_x, test_y = load(args.data_dir, False)
    train_x, test_x = normalize(train_x), normalize(test_x)
    batch_size, momentum = HYP["batch_size"], HYP["momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = HYP["lr"] / kilostep_scale
    wd = HYP["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    steps_per_epoch = len(train_x) // batch_size
    total = math.ceil(steps_per_epoch * epochs)

    model = make_net(widths)
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    others = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                           dict(params=others, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)

    def factor(step):
        warm = int(total * HYP["lr_peak"])
        if step < warm:
            return 0.2 + 0.8 * step / warm
        return 1.0 + (HYP["lr_end"] - 1.0) * (step - warm) / (total - warm)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
    slow = {k: v.clone() for k, v in model.state_dict().items()}

    def lookahead(decay):
        for s, v in zip(slow.values(), model.state_dict().values()):
            if v.dtype in (torch.half, torch.float):
                s.lerp_(v, 1 - decay)
                v.copy_(s)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")
    t0 = time.perf_counter()
    init_whitening(model[0], train_x[:5000])
    airbench_seconds, steps, state, rows = time.perf_counter() - t0, 0, {}, []
    for epoch in range(math.ceil(epochs)):
        model[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        t0 = time.perf_counter()
        model.train()
        for x, y in batches(train_x, train_y, epoch, state, batch_size):
            loss = loss_fn(model(x), y).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if steps % 5 == 0:
                lookahead(alpha[steps].item())
            if steps >= total:
                lookahead(1.0)
                break
        seconds = time.perf_counter() - t0
        airbench_seconds += seconds
        acc = accuracy(model, test_x, test_y, tta=False)
        rows.append({"epoch": epoch + 1, "train_seconds": round(seconds, 1), "test_acc": acc})
        print(json.dumps(rows[-1]), flush=True)
    t0 = time.perf_counter()
    tta_acc = accuracy(model, test_x, test_y, tta=True)
    airbench_seconds += time.perf_counter() - t0
    result = {"variant": "airbench" + args.variant, "epochs": epochs, "seed": args.seed, "threads": args.threads,
              "torch": torch.__version__, "steps": steps, "test_acc": rows[-1]["test_acc"], "test_acc_tta": tta_acc,
              "airbench_seconds": round(airbench_seconds, 1), "wall_seconds": round(time.perf_counter() - START, 1)}
    print(json.dumps(result), flush=True)
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
