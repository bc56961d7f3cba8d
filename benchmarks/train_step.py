"""Images/s and peak memory of one full training step (forward, backward, SGD) of the small SK presets,
skengine vs the same architecture in PyTorch (when torch is installed), measured alternately in one run.

    python benchmarks/train_step.py                          # sknet_cifar_tiny and sknet_cifar_small, batch 128
    python benchmarks/train_step.py --models sknet_cifar_small --batch 256 --steps 6
    python benchmarks/train_step.py --processes 2            # also skengine data parallel over 2 processes
    python benchmarks/train_step.py --models sknet_cifar_fast --batch 512 --processes 2 \
        --model-kwargs '{"attention": "none"}'               # the default command's net; airbench93's exactly
    python benchmarks/train_step.py --device cuda --models sknet_cifar_small skresnet18 --batch 256 --steps 20

On ``--device cuda`` skengine runs on CuPy (its own convolutions, cuBLAS matmuls) and PyTorch on
cuDNN (``cudnn.benchmark`` on, TF32 off on both sides, so both compute in float32); every step
ends with a device synchronize, and memory is what each library's caching allocator holds beyond
what it held before the steps.

With ``--processes N`` a third contender, "skengine-dp", runs the same step as the trainer's
``--processes N`` does: N forked processes with a one-thread BLAS each, every one on its shard of
the batch, gradients averaged through shared memory (skengine.distributed).

    python benchmarks/train_step.py --models skresnext50_32x4d --size 64 --batch 8 --steps 4
    python benchmarks/train_step.py --models skresnet18 --batch 1 --eval       # inference, no_grad

The timm-identical models (skresnet18, skresnet34, skresnext50_32x4d) run against timm's own model when
timm is installed, with skengine's weights copied into it (``interop.timm_state``, a strict load); the
others (the CIFAR nets) against a PyTorch twin built by translating the skengine module tree (same names,
same weights).  Either is checked to give the same logits before anything is timed.  ``--size`` is the
image side (32 by default).  Peak memory is measured in a fresh subprocess per framework: the growth of
the resident set over a few steps.  ``--eval`` times inference instead (eval mode, no_grad).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import skengine as sk  # noqa: E402
import skengine.functional as F  # noqa: E402
from skengine.distributed import ProcessGroup, average_gradients, float_buffers, vector_size  # noqa: E402
from skengine.models import create  # noqa: E402
from skengine.optim import SGD  # noqa: E402


def torch_twin(model):
    """The same network in PyTorch, module for module, with the same weights."""
    import torch
    import torch.nn as tnn

    class SK(tnn.Module):
        def __init__(self, m):
            super().__init__()
            self.m, self.c, self.split = m.num_paths, m.out_channels, m.split_input
            self.sigmoid = m.attention == "sigmoid"
            self.paths = convert(m.paths)
            self.fc_reduce, self.bn_reduce, self.fc_select = (convert(m.fc_reduce), convert(m.bn_reduce),
                                                              convert(m.fc_select))

        def forward(self, x):
            xs = x.split(x.shape[1] // self.m, 1) if self.split else [x] * self.m
            U = [p(xi) for p, xi in zip(self.paths, xs)]
            s = sum(U).mean((2, 3))
            logits = self.fc_select(torch.relu(self.bn_reduce(self.fc_reduce(s)))).reshape(-1, self.m, self.c)
            a = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, 1)
            return sum(a[:, i, :, None, None] * U[i] for i in range(self.m))

    class SE(tnn.Module):
        def __init__(self, m):
            super().__init__()
            self.fc1, self.fc2 = convert(m.fc1), convert(m.fc2)

        def forward(self, x):
            return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))[:, :, None, None]

    class Block(tnn.Module):
        def __init__(self, m):
            super().__init__()
            self.names = [n for n in ("conv1", "conv2", "conv3", "se") if getattr(m, n, None) is not None]
            for n in self.names + (["downsample"] if m.downsample is not None else []):
                setattr(self, n, convert(getattr(m, n)))
            self.has_down = m.downsample is not None

        def forward(self, x):
            out = x
            for n in self.names:
                out = getattr(self, n)(out)
            return torch.relu(out + (self.downsample(x) if self.has_down else x))

    class Net(tnn.Module):  # CifarSKNet (stem) or ResNet (conv1, bn1, act1, maxpool)
        def __init__(self, m):
            super().__init__()
            self.stages = list(m.stage_names)
            self.head = [n for n in ("stem", "conv1", "bn1", "act1", "maxpool") if hasattr(m, n)]
            for name, child in m.named_children():
                setattr(self, name, convert(child))

        def forward(self, x):
            for n in self.head + self.stages:
                x = getattr(self, n)(x)
            return self.fc(self.global_pool(x).flatten(1))

    class FastBlock(tnn.Module):
        def __init__(self, m):
            super().__init__()
            for n in ("conv", "pool", "bn", "act", "sk"):
                setattr(self, n, convert(getattr(m, n)))

        def forward(self, x):
            return self.sk(self.act(self.bn(self.pool(self.conv(x)))))

    class FastNet(tnn.Module):  # sknet_cifar_fast: airbench's trunk
        def __init__(self, m):
            super().__init__()
            for n in ("whiten", "act", "blocks", "pool", "fc"):
                setattr(self, n, convert(getattr(m, n)))
            self.logit_scale = m.logit_scale

        def forward(self, x):
            x = self.pool(self.blocks(self.act(self.whiten(x))))
            return self.fc(x.flatten(1)) * self.logit_scale

    def convert(m):
        kind = type(m).__name__
        if kind == "Conv2d":
            return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                              m.groups, bias=m.bias is not None)
        if kind in ("BatchNorm1d", "BatchNorm2d"):
            return getattr(tnn, kind)(m.num_features, eps=m.eps, momentum=m.momentum)
        if kind == "Linear":
            return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if kind in ("ReLU", "Identity", "Flatten"):
            return getattr(tnn, kind)()
        if kind == "GELU":
            return tnn.GELU(approximate=m.approximate)
        if kind == "FastBlock":
            return FastBlock(m)
        if kind == "FastSKNet":
            return FastNet(m)
        if kind == "MaxPool2d":
            return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        if kind == "AdaptiveAvgPool2d":
            return tnn.AdaptiveAvgPool2d(m.output_size)
        if kind == "Sequential":
            return tnn.Sequential(OrderedDict((n, convert(c)) for n, c in m.named_children()))
        if kind == "ModuleList":
            return tnn.ModuleList([convert(c) for c in m])
        if kind == "SKConv":
            return SK(m)
        if kind == "SEBlock":
            return SE(m)
        if kind in ("BasicBlock", "Bottleneck"):
            return Block(m)
        if kind in ("CifarSKNet", "ResNet"):
            return Net(m)
        raise TypeError(f"no PyTorch twin for {kind}")

    twin = convert(model)
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}  # e.g. the fast net's whitening
    for n, p in twin.named_parameters():
        p.requires_grad_(n not in frozen)
    return twin


TIMM_MODELS = ("skresnet18", "skresnet34", "skresnext50_32x4d")


def torch_model(model, name):
    """timm's own ``name`` with ``model``'s weights where timm has it, else the translated twin."""
    try:
        import timm
    except ImportError:
        timm = None
    if timm is None or name not in TIMM_MODELS:
        return torch_twin(model)
    import torch

    from skengine.interop import timm_state
    twin = timm.create_model(name, num_classes=model.fc.out_features)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in timm_state(model).items()}, strict=True)
    return twin


def sk_step(model, opt, x, y):
    loss = F.cross_entropy(model(sk.Tensor(x)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def torch_step(model, opt, x, y):
    import torch
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


MODEL_KWARGS = {}  # --model-kwargs: every model's constructor options (e.g. sknet_cifar_fast's attention)


def model_and_batch(name, batch, size=32):
    """The seeded model and one random batch that every contender trains on."""
    sk.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create(name, num_classes=10, **MODEL_KWARGS)
    return model, rng.standard_normal((batch, 3, size, size)).astype(np.float32), rng.integers(0, 10, batch)


def synchronize(framework, device):
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device != "cuda":
        return
    if framework == "torch":
        import torch
        torch.cuda.synchronize()
    else:
        sk.backend.cupy().cuda.Device().synchronize()


def setup(name, batch, framework, device="cpu", size=32, inference=False):
    """(step, optimizer) of ``framework`` on ``device``; a step returns when its work is done.  With
    ``inference`` a step is an eval-mode forward under no_grad."""
    model, x, y = model_and_batch(name, batch, size)
    if framework == "skengine":
        model.to(device)
        x, y = sk.to_device(x, device), sk.to_device(y, device)
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
        if inference:
            model.eval()

        def step():
            if inference:
                with sk.no_grad():
                    model(sk.Tensor(x))
            else:
                sk_step(model, opt, x, y)
            synchronize(framework, device)
        return step, opt
    import torch
    twin = torch_model(model, name).to(device)
    topt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    if inference:
        twin.eval()

    def step():
        if inference:
            with torch.no_grad():
                twin(tx)
        else:
            torch_step(twin, topt, tx, ty)
        synchronize(framework, device)
    return step, topt


def setup_data_parallel(name, batch, world, size=32):
    """The trainer's data-parallel step over ``world`` processes; returns (step, close)."""
    model, x, y = model_and_batch(name, batch, size)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    params, buffers = list(model.parameters()), float_buffers(model)
    group = ProcessGroup(world, vector_size(model, 0))
    threads = sk.get_num_threads()

    def shard_step(g):
        lo, hi = batch * g.rank // world, batch * (g.rank + 1) // world
        loss = F.cross_entropy(model(sk.Tensor(x[lo:hi])), y[lo:hi])
        opt.zero_grad()
        loss.backward()
        average_gradients(g, params, buffers, hi - lo)
        opt.step()

    def worker(g):
        while g.all_reduce([0.0])[0] == 0:  # rank 0 says "one more step" (0) or "stop" (1)
            shard_step(g)

    group.start(worker, threads=1)
    sk.set_num_threads(threads)  # the other contenders keep theirs

    def step():
        sk.set_num_threads(1)
        group.all_reduce([0.0])
        shard_step(group)
        sk.set_num_threads(threads)

    def close():
        group.all_reduce([1.0])
        group.close()

    return step, close


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def device_memory_mb(framework):
    """What the framework's CUDA caching allocator holds now, MiB."""
    if framework == "torch":
        import torch
        return torch.cuda.memory_reserved() / 2 ** 20
    return sk.backend.cupy().get_default_memory_pool().total_bytes() / 2 ** 20


def memory_probe(name, batch, framework, device="cpu", size=32, inference=False):
    """Run in a subprocess: memory growth (MiB) over 3 training steps.

    CPU: the peak resident set (VmHWM) over the steps minus the resident set
    before them.  CUDA: what the caching allocator holds after the steps minus
    what it held before (freed blocks stay cached, so this is the steps' peak).
    """
    step, _ = setup(name, batch, framework, device, size, inference)
    if device == "cuda":
        synchronize(framework, device)
        before = device_memory_mb(framework)
        for _ in range(3):
            step()
        print(json.dumps({"peak_growth_mb": device_memory_mb(framework) - before}))
        return
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the steps' peak, not setup's
        f.write("5")
    before = rss_mb()
    for _ in range(3):
        step()
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a probe
    # started by a big parent would report the parent's resident set
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"peak_growth_mb": peak - before}))


def check_twin(name, size=32):
    import torch
    model = create(name, num_classes=10, **MODEL_KWARGS).eval()
    twin = torch_model(model, name).eval()
    x = np.random.default_rng(1).standard_normal((4, 3, size, size)).astype(np.float32)
    with sk.no_grad(), torch.no_grad():
        a, b = model(sk.Tensor(x)).numpy(), twin(torch.from_numpy(x)).numpy()
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
    assert err < 1e-4, f"{name}: the PyTorch model disagrees (relative error {err:.2e})"
    return err, type(twin).__module__.split(".")[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["sknet_cifar_tiny", "sknet_cifar_small"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--eval", action="store_true", help="time inference (eval mode, no_grad) instead")
    p.add_argument("--steps", type=int, default=5, help="timed steps per framework (alternating)")
    p.add_argument("--processes", type=int, default=0, help="also time skengine data parallel over N processes")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: skengine on CuPy, PyTorch on cuDNN (both float32, no TF32)")
    p.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON",
                   help='constructor options of every model, e.g. \'{"attention": "none"}\' for sknet_cifar_fast')
    p.add_argument("--memory-probe", nargs=3, metavar=("MODEL", "BATCH", "FRAMEWORK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    MODEL_KWARGS.update(args.model_kwargs)
    if args.processes and args.eval:
        p.error("--processes: the data-parallel contender trains; leave it out with --eval")
    if args.processes and args.device != "cpu":
        p.error("--processes: data parallelism over processes is for the CPU; leave it out with --device cuda")
    if args.memory_probe:
        return memory_probe(args.memory_probe[0], int(args.memory_probe[1]), args.memory_probe[2], args.device,
                            args.size, args.eval)
    if args.device == "cuda":
        cp = sk.backend.cupy()  # a clear error here if CuPy or the GPU is missing
        print(f"GPU: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}; cupy {cp.__version__}")
    try:
        import torch
        threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        frameworks = ["skengine", "torch"]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}")
    except ImportError:
        frameworks = ["skengine"]
        print("torch not installed: skengine only")
    rows = []
    for name in args.models:
        if "torch" in frameworks:
            err, source = check_twin(name, args.size)
            print(f"{name}: the {source} model matches, relative error of the logits {err:.1e}")
        steps = {f: setup(name, args.batch, f, args.device, args.size, args.eval)[0] for f in frameworks}
        close = None
        if args.processes:
            steps["skengine-dp"], close = setup_data_parallel(name, args.batch, args.processes, args.size)
        for f in steps:
            steps[f]()  # warm-up
        times = {f: [] for f in steps}
        for _ in range(args.steps):
            for f in steps:
                time.sleep(0.1)  # let the other library's spinning threads go to sleep
                t0 = time.perf_counter()
                steps[f]()
                times[f].append(time.perf_counter() - t0)
        if close:
            close()
        mem = {}
        for f in frameworks:
            probe = [sys.executable, __file__, "--memory-probe", name, str(args.batch), f, "--device", args.device,
                     "--size", str(args.size), "--model-kwargs", json.dumps(args.model_kwargs)]
            probe += ["--eval"] if args.eval else []
            out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
            mem[f] = json.loads(out.strip().splitlines()[-1])["peak_growth_mb"]
        row = {"model": name, "batch": args.batch, "size": args.size, "mode": "eval" if args.eval else "train",
               "device": args.device}
        for f in frameworks:
            row[f"{f}_img_s"] = args.batch / float(np.median(times[f]))
            row[f"{f}_mem_mb"] = mem[f]
        if args.processes:
            row["skengine_dp_img_s"] = args.batch / float(np.median(times["skengine-dp"]))
        if "torch" in frameworks:
            row["speed_ratio"] = row["skengine_img_s"] / row["torch_img_s"]
            if args.processes:
                row["dp_speed_ratio"] = row["skengine_dp_img_s"] / row["torch_img_s"]
            row["memory_ratio"] = row["skengine_mem_mb"] / max(row["torch_mem_mb"], 1e-9)
        rows.append(row)
        print(json.dumps(row))
    print("\n| model | mode | size | batch | skengine img/s | torch img/s | speed ratio | skengine MiB | torch MiB | "
          "memory ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['size']} | {r['batch']} | {r['skengine_img_s']:.1f} | "
              f"{r.get('torch_img_s', float('nan')):.1f} | "
              f"{r.get('speed_ratio', float('nan')):.2f}x | {r['skengine_mem_mb']:.0f} | "
              f"{r.get('torch_mem_mb', float('nan')):.0f} | {r.get('memory_ratio', float('nan')):.2f}x |")
    if args.processes:
        print(f"\n| model | size | batch | skengine, {args.processes} processes img/s | torch img/s | speed ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['model']} | {r['size']} | {r['batch']} | {r['skengine_dp_img_s']:.1f} | "
                  f"{r.get('torch_img_s', float('nan')):.1f} | {r.get('dp_speed_ratio', float('nan')):.2f}x |")


if __name__ == "__main__":
    main()
