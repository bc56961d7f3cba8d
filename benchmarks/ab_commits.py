"""A/B the training step of two commits of skengine, side by side in one process.

    python benchmarks/ab_commits.py HEAD~1 HEAD --model sknet_cifar_small --batch 64 --rounds 16

Each commit's ``skengine/`` is exported (``git archive``) into a temporary folder and imported under its
own name, so both live in one process and their steps alternate round by round (the machine's noise hits
both alike).  The same weights (seed 0) and batch go through both; the losses must agree, and the
table gives each commit's median step and the paired ratio of the medians (> 1: B is faster).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

from common import machine_report, median, paired_ratio, table, time_alternately


def import_commit(rev, folder):
    """The skengine package of commit ``rev``, imported fresh from an export into ``folder``."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout
    archive = subprocess.run(["git", "-C", top.strip(), "archive", rev, "skengine"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    for name in [m for m in sys.modules if m == "skengine" or m.startswith("skengine.")]:
        del sys.modules[name]
    sys.path.insert(0, folder)
    try:
        import skengine
        import skengine.functional
        import skengine.models
    finally:
        sys.path.remove(folder)
    return skengine


def step_of(sk, model, x, y):
    sk.manual_seed(0)
    net = sk.models.create(model, num_classes=10)

    def step():
        for p in net.parameters():
            p.grad = None
        loss = sk.functional.cross_entropy(net(sk.Tensor(x)), y)
        loss.backward()
        return loss.item()
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="commit A (e.g. HEAD~1)")
    p.add_argument("b", help="commit B (e.g. HEAD)")
    p.add_argument("--model", default="sknet_cifar_small")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--rounds", type=int, default=16)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    steps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, rev in (("A", args.a), ("B", args.b)):
            folder = os.path.join(tmp, label)
            os.mkdir(folder)
            steps[f"{label} {rev}"] = step_of(import_commit(rev, folder), args.model, x, y)
        losses = {name: step() for name, step in steps.items()}
        if len(set(losses.values())) != 1:
            print(f"warning: the losses differ: {losses}", file=sys.stderr)
        times = time_alternately(steps, repeats=args.rounds)
    (na, ta), (nb, tb) = times.items()
    print("\n".join(machine_report([f"model {args.model}, batch {args.batch}, {args.size}px, "
                                    f"{args.rounds} rounds; losses {losses}"])))
    print(table([[na, f"{median(ta) * 1e3:.1f}", "1.00"],
                  [nb, f"{median(tb) * 1e3:.1f}", f"{paired_ratio(ta, tb):.3f}"]],
                 ["commit", "median step (ms)", "speed vs A (paired)"]))


if __name__ == "__main__":
    main()
