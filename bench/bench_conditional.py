"""Class-conditional digits with classifier-free guidance: accuracy and Frechet distance per class.

    python bench/bench_conditional.py                                   # gaussian -> digits, w = 0, 1, 3
    python bench/bench_conditional.py --guidance 0 0.5 1 2 --seeds 0 1 2
    python bench/bench_conditional.py --targets-args "--plan optimal" --train-args "--net unet"

For each seed ``S`` it runs the README's conditional commands as subprocesses::

    physfield targets --field strong --source gaussian --target digits --n 200000 --conditional --seed S -o t.h5
    learn train --targets t.h5 --out run --steps 3000 --seed S
    learn sample --checkpoint run --label all --n 1000 --guidance W -o s.npy --labels l.npy --seed S
    learn eval --samples s.npy --reference digits --labels l.npy --json

with ``--targets-args`` / ``--train-args`` appended, and prints one row per guidance ``W``: the
share of samples ``learn.classifier`` reads as the label asked for (mean over the classes and the
worst class), the Frechet distance of each class's samples to its real held-out digits (mean over
classes) and the confident share; means over the seeds; and a last row with the same scores of the
classifier's training split of the real digits (the floor of the per-class Frechet distance).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_defaults import sh  # noqa: E402  (the same subprocess runner)


def run_seed(seed, args, work):
    cache, run = work / "t.h5", work / "run"
    sh("physfield", "targets", "--field", "strong", "--source", args.source, "--target", "digits", "--n",
       args.n_targets, "--conditional", "--seed", seed, "-o", cache, "--overwrite", extra=args.targets_args)
    sh("rm", "-rf", run)
    sh("learn", "train", "--targets", cache, "--out", run, "--steps", args.steps, "--seed", seed,
       extra=args.train_args)
    rows = {}
    for w in args.guidance:
        s, lab = work / "s.npy", work / "l.npy"
        sh("learn", "sample", "--checkpoint", run, "--label", "all", "--n", args.n, "--guidance", w, "-o", s,
           "--labels", lab, "--seed", seed)
        per = json.loads(sh("learn", "eval", "--samples", s, "--reference", "digits", "--labels", lab,
                            "--json"))["digits"]["per_label"]
        rows[w] = summary(per)
        print(f"seed {seed} w {w}: {rows[w]}", flush=True)
    return rows


def summary(per):
    """Means over the classes of ``classifier.per_label``'s scores, the worst class's accuracy, and
    each class's accuracy and Frechet distance."""
    acc = [v["accuracy"] for v in per.values()]
    return {"accuracy": float(np.mean(acc)), "worst": float(np.min(acc)),
            "fd": float(np.mean([v["fd"] for v in per.values()])),
            "confident": float(np.mean([v["confident"] for v in per.values()])),
            "per_class": {int(c): (v["accuracy"], v["fd"]) for c, v in per.items()}}


def real_row():
    """The same scores for the classifier's training split of the real digits (their own labels):
    the floor of the per-class Frechet distance against the ~60 held-out digits of each class."""
    from learn import classifier

    x, y = classifier.digits()
    train = classifier.split()[0]
    return summary(classifier.per_label(x[train], y[train]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="gaussian")
    p.add_argument("--guidance", nargs="+", type=float, default=[0.0, 1.0, 3.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--n-targets", type=int, default=200000)
    p.add_argument("--n", type=int, default=1000, help="samples per class")
    p.add_argument("--targets-args", default="")
    p.add_argument("--train-args", default="")
    args = p.parse_args()
    print(f"command: `python bench/bench_conditional.py {shlex.join(sys.argv[1:])}`; "
          f"{platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_seed(seed, args, Path(tmp)) for seed in args.seeds]
    print(f"\ntargets args: `{args.targets_args}`; train args: `{args.train_args}`; seeds {args.seeds}\n")
    print("| guidance w | read as the label asked (mean over classes) | worst class | FD per class (mean) | "
          "confident |")
    print("|---:|---:|---:|---:|---:|")
    for w in args.guidance:
        mean = {k: np.mean([r[w][k] for r in results]) for k in ("accuracy", "worst", "fd", "confident")}
        print(f"| {w:g} | {mean['accuracy']:.3f} | {mean['worst']:.3f} | {mean['fd']:.2f} | {mean['confident']:.3f} |")
    real = real_row()
    print(f"| real digits (training split) | {real['accuracy']:.3f} | {real['worst']:.3f} | {real['fd']:.2f} | "
          f"{real['confident']:.3f} |")
    classes = sorted(real["per_class"])
    print("\nPer class, read as the label asked / Frechet distance to its held-out real digits (mean over seeds):\n")
    print("| guidance w | " + " | ".join(map(str, classes)) + " |")
    print("|---:|" + "---|" * len(classes))
    for name, per in [(f"{w:g}", [r[w]["per_class"] for r in results]) for w in args.guidance] + \
            [("real", [real["per_class"]])]:
        cells = [f"{np.mean([p[c][0] for p in per]):.3f} / {np.mean([p[c][1] for p in per]):.1f}" for c in classes]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
