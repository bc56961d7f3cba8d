"""Where a training step's time goes: seconds by autograd Function, forward and backward, for one model.

    python benchmarks/profile_step.py skresnext50_32x4d --size 64 --batch 32
    python benchmarks/profile_step.py sknet_cifar_small --batch 128 --steps 3
    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py sknet_cifar_fast --batch 256 --label-smoothing 0.2
        # one of the default command's two processes (its half of a batch of 512, a one-thread BLAS);
        # add --frozen-whiten-bias for a step after the whitening bias stops

Every Function subclass's ``forward`` and ``backward`` is wrapped with a timer for the profiled steps (after
one warm-up step); the table lists each Function's share of the step, so the next bottleneck is visible.
What no Function accounts for (the graph walk, optimizer, Python between ops) is the "other" row.
"""
import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import skengine as sk  # noqa: E402
import skengine.functional as F  # noqa: E402
from common import machine_report, table  # noqa: E402
from skengine.autograd import Function  # noqa: E402
from skengine.models import create  # noqa: E402
from skengine.optim import SGD  # noqa: E402


def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def timed(totals, key, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key][0] += time.perf_counter() - t0
            totals[key][1] += 1
    return wrapper


def profile(step, steps):
    """{(Function name, "forward"|"backward"): [seconds, calls]} over ``steps`` calls of ``step``, and the
    total seconds.  Only a class's own methods are wrapped, so no time is counted twice."""
    totals = defaultdict(lambda: [0.0, 0])
    patched = []
    for cls in set(subclasses(Function)):
        for method in ("forward", "backward"):
            if method in vars(cls):
                patched.append((cls, method, vars(cls)[method]))
                setattr(cls, method, timed(totals, (cls.__name__, method), vars(cls)[method]))
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - t0
    finally:
        for cls, method, fn in patched:
            setattr(cls, method, fn)
    return totals, total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--model-kwargs", type=json.loads, default={}, metavar="JSON", help="constructor options")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--frozen-whiten-bias", action="store_true",
                   help="a step after the whitening bias stops (the fast recipe's last 12 epochs of 15): no gradient "
                        "for it, as the trainer does")
    args = p.parse_args()
    sk.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create(args.model, num_classes=10, **args.model_kwargs)
    if args.frozen_whiten_bias:
        model.whiten.bias.requires_grad_(False)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)

    def step():
        loss = F.cross_entropy(model(sk.Tensor(x)), y, label_smoothing=args.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up: buffers, caches
    totals, total = profile(step, args.steps)
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])
    accounted = sum(s for s, _ in totals.values())
    out = [[name, method, f"{1e3 * s / args.steps:.1f}", f"{n // args.steps}", f"{100 * s / total:.1f}%"]
           for (name, method), (s, n) in rows[:args.top]]
    other = total - accounted
    out.append(["other", "", f"{1e3 * other / args.steps:.1f}", "", f"{100 * other / total:.1f}%"])
    speed = f"{1e3 * total / args.steps:.0f} ms a step, {args.batch * args.steps / total:.1f} img/s"
    print("\n".join(machine_report([f"{args.model}, batch {args.batch}, {args.size}px, {args.steps} steps: {speed}"])))
    print(table(out, ["Function", "pass", "ms per step", "calls per step", "share"]))


if __name__ == "__main__":
    main()
