"""The README's learner commands with their defaults, against torchcfm's flow matching on the same budget.

    python bench/bench_defaults.py                                  # the "Done when" table of issue 12
    python bench/bench_defaults.py --pairs 8gaussians:moons --L 6 --targets-args "--noise 0.9"
    python bench/bench_defaults.py --L 6 --targets-args "--d 0.5" --train-args "--target direction" --no-cfm
    python bench/bench_defaults.py --pairs gaussian:digits --L 6          # digits generation, UNet

For every pair ``SOURCE:TARGET``, plate distance ``L`` and seed ``S`` it runs, as a user would
(subprocesses, so exactly the installed commands and their defaults)::

    physfield targets --field strong --source SOURCE --target TARGET --n 200000 --L L --seed S -o t.h5
    learn train --targets t.h5 --out run --steps 3000 --seed S
    learn sample --checkpoint run --n 2000 -o s.npy --seed S
    learn eval --samples s.npy --reference TARGET --n 2000 --json

with ``--targets-args`` / ``--train-args`` appended (for sweeps of a setting). The ``CFM`` row is
torchcfm's ``ConditionalFlowMatcher`` (sigma 0) on the same MLP, optimiser, steps and batch
(``bench/bench_learn.py``'s ``fm_train``: fresh source and target draws every step), sampled by
100 RK4 steps (``learn sample``'s default) from 2000 draws of ``SOURCE`` and scored by the same
``learn eval`` command. CFM has no ``L``, so it runs once per pair and seed. torchcfm: ``pip install --no-deps torchcfm``.

Prints one line per run and a table: each score per seed, its mean and its ratio to CFM's: W2;
for digits also the Frechet distance ``fd`` in ``learn.classifier``'s features and the share of
samples the classifier reads with confidence >= 0.9 (``confident``; ``confident_real``: the same
share of real digits); ``bad``: the lines on which ``learn sample`` met ``f_z <= 0`` or capped a
slope. CFM trains the net ``learn train`` would (``--net auto``: the UNet for digits) with the
net and optimiser options of ``--train-args``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def sh(*words, extra=""):
    """Run a command (``extra``: more arguments, shell-quoted); its stdout."""
    cmd = [*map(str, words), *shlex.split(extra)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


SHARED = {"--net": ("net", str), "--hidden": ("hidden", int), "--depth": ("depth", int), "--emb": ("emb", int),
          "--batch": ("batch", int), "--lr": ("lr", float)}  # learn train options the CFM row shares


def shared_config(train_args):
    """The ``learn train`` options of ``train_args`` that set the net and the optimiser, for CFM."""
    words = shlex.split(train_args)
    return {SHARED[w][0]: SHARED[w][1](v) for w, v in zip(words, words[1:]) if w in SHARED}


def scores(samples, reference, n):
    """``learn eval``'s W2 and, for digits, its Frechet distance and confident share."""
    out = json.loads(sh("learn", "eval", "--samples", samples, "--reference", reference, "--n", n, "--json"))
    digits = out.get("digits") or {}
    return {"w2": out["w2"], **{k: digits[k] for k in ("fd", "confident", "confident_real") if k in digits}}


def ifm(source, target, L, seed, args, work):
    """Scores of the README's commands for one pair, L and seed (:func:`scores`) and ``bad``: the
    number of lines on which ``learn sample`` met ``f_z <= 0`` or capped a slope (its WARNING)."""
    cache, run, samples = work / "t.h5", work / "run", work / "s.npy"
    sh("physfield", "targets", "--field", "strong", "--source", source, "--target", target, "--n", args.n_targets,
       "--L", L, "--seed", seed, "-o", cache, "--overwrite", extra=args.targets_args)
    sh("rm", "-rf", run)
    sh("learn", "train", "--targets", cache, "--out", run, "--steps", args.steps, "--seed", seed,
       extra=args.train_args)
    said = sh("learn", "sample", "--checkpoint", run, "--n", args.n, "-o", samples, "--seed", seed)
    bad = re.search(r"on (\d+) lines", said)
    return {**scores(samples, target, args.n), "bad": int(bad.group(1)) if bad else 0}


def cfm(source, target, seed, args, work):
    """Scores of torchcfm's CFM on the budget of ``learn train``'s defaults and the net and optimiser
    options of ``--train-args`` (:data:`SHARED`)."""
    import torch

    from bench_learn import fm_sample, fm_train
    from learn import train
    from physfield import data

    D = data.sample(target, 1).shape[1]
    cfg = train.TrainConfig(targets="", out="", steps=args.steps, seed=seed, **shared_config(args.train_args))
    torch.set_num_threads(os.cpu_count())
    model, _ = fm_train(cfg, source, target, D, "CFM", 0.0)
    x0 = data.sample(source, args.n, seed=[seed, 1], dim=D)
    samples = work / "cfm.npy"
    np.save(samples, fm_sample(model, x0, 100))  # follow_z's RK4, as learn sample
    return scores(samples, target, args.n)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", nargs="+", default=["gaussian:swissroll", "8gaussians:moons"])
    p.add_argument("--L", nargs="+", type=float, default=[6.0, 40.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--n-targets", type=int, default=200000)
    p.add_argument("--n", type=int, default=2000, help="samples and reference draws")
    p.add_argument("--targets-args", default="", help="more arguments of physfield targets")
    p.add_argument("--train-args", default="", help="more arguments of learn train")
    p.add_argument("--no-cfm", action="store_true")
    args = p.parse_args()
    print(f"command: `python bench/bench_defaults.py {shlex.join(sys.argv[1:])}`; {os.cpu_count()} CPUs "
          f"{platform.processor() or platform.machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for pair in args.pairs:
            source, target = pair.split(":", 1)
            base = None
            if not args.no_cfm:
                base = [cfm(source, target, s, args, work) for s in args.seeds]
                print(f"{pair} CFM seeds {args.seeds}: {base}", flush=True)
            for L in args.L:
                ours = [ifm(source, target, L, s, args, work) for s in args.seeds]
                print(f"{pair} L={L:g} seeds {args.seeds}: {ours}", flush=True)
                rows.append((pair, L, ours, base))
    print(f"\ntargets args: `{args.targets_args}`; train args: `{args.train_args}`\n")
    print("| pair | L | score | per seed | mean | CFM per seed | CFM mean | ratio |")
    print("|---|---:|---|---|---:|---|---:|---:|")
    for pair, L, ours, base in rows:
        for key in [k for k in ("w2", "fd", "confident", "confident_real", "bad") if k in ours[0]]:
            mine = [r[key] for r in ours]
            cells = [pair, f"{L:g}", key, ", ".join(f"{w:.3f}" for w in mine), f"{np.mean(mine):.3f}"]
            if base is None or key not in base[0]:
                cells += ["-"] * 3
            else:
                theirs = [r[key] for r in base]
                cells += [", ".join(f"{w:.3f}" for w in theirs), f"{np.mean(theirs):.3f}",
                          f"{np.mean(mine) / np.mean(theirs):.2f}x"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
