"""Speed of ``learn logprob``: the divergence batched or per coordinate, float64 or float32, fixed or adaptive steps.

    python bench/bench_logprob.py --checkpoint runs/digits_cond      # the README's conditional digits run
    python bench/bench_logprob.py --checkpoint runs/digits_cond --quick   # 20 points, 20 steps

``log q(x)`` of ``--n`` real digits (64-D, drawn with seed 0, each with its own label when the run
is conditional, guidance as ``learn logprob``'s default) under the run's EMA net, by
``learn.logprob.log_prob`` with the exact divergence, on ``torch.get_num_threads()`` threads.
Rows, all in one run:

- ``loop``: the reference, :func:`learn.logprob.divergence_loop` (one backward pass per
  coordinate), float64, RK4 on ``--steps`` steps: the ``learn logprob`` of before;
- ``batched``: :func:`learn.logprob.divergence` (one backward pass batched over the ``D`` basis
  vectors), otherwise the same;
- ``float32``: batched, in float32;
- ``dopri5``: batched, float64, adaptive steps with ``rtol = atol = --rtol``;
- ``dopri5 float32``: batched, float32, adaptive steps with ``rtol = atol = --rtol32``;
- ``hutchinson loop`` / ``hutchinson``: 8 probes per point, per probe or batched (float64, RK4).

Each row prints its time, its speed-up over ``loop``, the evaluations of the slope and its
divergence, and the largest absolute and relative difference of ``log q`` from ``loop`` (from
``hutchinson loop`` for ``hutchinson``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # bench/machine.py, beside this script

from learn import logprob
from learn.sample import load_model
from physfield import data as pdata


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/digits_cond", help="a learn run of a 64-D cache")
    parser.add_argument("--n", type=int, default=200, help="points")
    parser.add_argument("--steps", type=int, default=100, help="RK4 steps")
    parser.add_argument("--rtol", type=float, default=1e-6, help="tolerances of the float64 dopri5 row")
    parser.add_argument("--rtol32", type=float, default=1e-5, help="tolerances of the float32 dopri5 row")
    parser.add_argument("--quick", action="store_true", help="20 points, 20 steps")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps = 20, 20
    if not Path(args.checkpoint).exists():
        raise SystemExit(f"{args.checkpoint} not found: train it with the README's conditional digits commands")
    model, run = load_model(args.checkpoint)
    target = run.targets.target
    labels = np.arange(args.n) % run.n_classes if run.n_classes else None
    if labels is None:
        points = pdata.sample(target, args.n, seed=0, dim=run.D)
    else:
        points, labels = pdata.sample_labelled(target, args.n, seed=0, dim=run.D, labels=labels)
    print(f"# learn logprob: {args.n} points of {target} (D = {run.D}), {args.checkpoint}; "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs {cpu_name()}", flush=True)
    rows = [("loop", dict(div=logprob.divergence_loop)), ("batched", {}),
            ("float32", dict(precision="float32")),
            ("dopri5", dict(method="dopri5", rtol=args.rtol, atol=args.rtol)),
            ("dopri5 float32", dict(method="dopri5", rtol=args.rtol32, atol=args.rtol32, precision="float32")),
            ("hutchinson loop", dict(exact=False, div=logprob.divergence_loop)), ("hutchinson", dict(exact=False))]
    results, base = {}, None
    print(f"{'row':<16} {'seconds':>8} {'speed-up':>8} {'evaluations':>11} {'max |d log q|':>13} {'max rel':>9}")
    for name, options in rows:
        batched = logprob.divergence
        logprob.divergence = options.pop("div", batched)  # the rows of the reference swap it in
        try:
            t0 = time.perf_counter()
            result = logprob.log_prob(model, run, points, args.steps, labels=labels, **options)
            seconds = time.perf_counter() - t0
        finally:
            logprob.divergence = batched
        results[name] = result.logp
        base = seconds if base is None else base
        ref = results["hutchinson loop" if name == "hutchinson" else "loop"]
        diff = np.abs(result.logp - ref)
        print(f"{name:<16} {seconds:8.2f} {base / seconds:8.1f} {result.evaluations:11d} {diff.max():13.3g} "
              f"{(diff / np.abs(ref)).max():9.2g}", flush=True)


if __name__ == "__main__":
    main()
