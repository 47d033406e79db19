"""How many field or network evaluations a line needs: the straightness claim, measured.

    python bench/bench_nfe.py                 # all three (about an hour on 2 cores the first time)
    python bench/bench_nfe.py --only toys     # 8gaussians -> moons only
    python bench/bench_nfe.py --only exact    # the exact fields' lines only

For every model it samples the same ``N`` lines with every stepper of ``physfield.lines`` over a
range of settings: Euler and RK4 on uniform grids of ``steps``, and the embedded pairs ``bs32`` and
``dopri5`` at ``rtol = atol`` from 1e-1 down. Each run gives the evaluations it took (of the net,
or of the field's ``direction``, on the batch of lines still going) and the ``W2`` of its ends
against held-out draws of ``Q`` (``learn eval``'s reference; for the exact fields, the sinks).
The converged ``W2`` is that of RK4 on a fine grid (``REFERENCE_STEPS``). A stepper *needs*
``n`` evaluations when its run with ``n`` evaluations, and every run of the same stepper with
more, is within ``TOLERANCE`` (2 %) of the converged ``W2``; the table gives that number per
stepper and the smallest over all of them.

Models (trained once into ``--work``, reused by a later run):

- ``IFM``: the README's commands with their defaults (toys: ``physfield targets --field strong
  --source 8gaussians --target moons --n 200000`` and ``learn train --steps 3000``; digits: the
  README's "Generating digits" commands), sampled by ``learn.sample.sample``;
- ``CFM`` and ``OT-CFM``: torchcfm's ``ConditionalFlowMatcher`` and
  ``ExactOptimalTransportConditionalFlowMatcher`` (sigma 0) on the same net, optimiser, steps and
  batch (``bench/bench_learn.py``'s ``fm_train``), sampled by ``physfield.lines.follow_z`` from
  ``t = 0`` to 1;
- ``exact strong`` and ``exact coulomb``: ``physfield trace`` on its default data (``gaussian`` ->
  ``8gaussians``, 256 per side, paired plan, 512 lines, ``L = 6``), the field evaluated exactly;
  the uniform "grid" is a step bound ``h_max = 0.02 (L + spread) / s``, ``step_frac = 0.25 / s``
  for RK4 (``s`` in the ``steps`` column), the embedded pairs keep the trace's bounds, and the
  converged run is the README's (RK4 with ``0.005 (L + spread)`` and ``0.1``). ``W2`` is that of
  the arrived lines' ends.

torchcfm: ``pip install --no-deps torchcfm``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from bench_defaults import sh  # bench/, beside this script
from machine import cpu_name

TOLERANCE = 0.02
REFERENCE_STEPS = 400  # RK4 on this many uniform steps is the converged run of a learned model
GRID = {"euler": (5, 10, 20, 40, 80, 160), "rk4": (2, 3, 4, 6, 8, 12, 16, 25, 50, 100)}
RTOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5)
EXACT_SCALES = (0.25, 0.5, 1, 2, 4)  # RK4 step bounds of the exact fields: the trace's default / s

PROBLEMS = {
    "toys": {"source": "8gaussians", "target": "moons", "targets": "--n 200000", "train": "--steps 3000"},
    "digits": {"source": "gaussian", "target": "digits",
               "targets": "--n 1000000 --plan paired --noise 0 --z-schedule logit-normal",
               "train": "--steps 20000 --net mlp --hidden 512 --depth 4"},
}


def settings():
    """``(method, setting)`` of every run: a grid's steps, or an embedded pair's rtol."""
    return ([(m, s) for m, grid in GRID.items() for s in grid]
            + [(m, r) for m in ("bs32", "dopri5") for r in RTOLS])


def needed(runs, converged):
    """Per method, the evaluations from which on every run is within ``TOLERANCE`` of
    ``converged`` (``None``: not even the finest is)."""
    out = {}
    for method in dict.fromkeys(m for m, _, _, _ in runs):
        mine = sorted((nfe, w) for m, _, nfe, w in runs if m == method)
        ok = [abs(w - converged) <= TOLERANCE * converged for _, w in mine]
        first = next((i for i in range(len(mine)) if all(ok[i:])), None)
        out[method] = None if first is None else mine[first][0]
    return out


def learned_runs(name, problem, n, work):
    """``{row: (runs, converged)}`` of the three learned models of one problem."""
    from bench_learn import fm_train

    from learn import sample as learn_sample
    from learn import train
    from learn.evaluate import EVAL_SEED
    from learn.slope import slope_fn
    from physfield import data as pdata
    from physfield import lines
    from physfield.metrics import w2

    source, target = problem["source"], problem["target"]
    reference = pdata.sample(target, n, seed=EVAL_SEED)
    D = reference.shape[1]
    cache, run = work / f"{name}.h5", work / f"{name}_ifm"
    if not (run / "checkpoint.pt").exists():
        sh("physfield", "targets", "--field", "strong", "--source", source, "--target", target, "-o", cache,
           "--overwrite", extra=problem["targets"])
        sh("learn", "train", "--targets", cache, "--out", run, extra=problem["train"])
    model, record = learn_sample.load_model(run)

    def ifm(method, setting):
        fixed = method in GRID
        res = learn_sample.sample(model, record, n, steps=setting if fixed else 100, method=method,
                                  rtol=1.0 if fixed else setting, atol=1.0 if fixed else setting)
        return res.stats["evaluations"], res.samples

    samplers = {"IFM": ifm}
    words = shlex.split(problem["train"])
    options = {w[2:]: v for w, v in zip(words, words[1:]) if w.startswith("--")}
    cfg = train.TrainConfig(targets="", out="", steps=int(options["steps"]), net=options.get("net", "auto"),
                            **{k: int(options[k]) for k in ("hidden", "depth") if k in options})
    torch.set_num_threads(os.cpu_count())
    x0 = torch.from_numpy(pdata.sample(source, n, seed=[0, 1], dim=D).astype(np.float32))
    for row in ("CFM", "OT-CFM"):
        path = work / f"{name}_{row}.pt"
        if path.exists():
            net = torch.load(path, weights_only=False)
        else:
            net, _ = fm_train(cfg, source, target, D, row, 0.0)
            torch.save(net, path)

        def flow(method, setting, net=net):
            fixed = method in GRID
            with torch.no_grad():
                res = lines.follow_z(slope_fn(net, "velocity"), x0, 0.0, 1.0, setting if fixed else 100, method,
                                     rtol=setting, atol=setting)
            return res.evaluations, res.x.numpy()

        samplers[row] = flow
    out = {}
    for row, draw in samplers.items():
        converged = w2(draw("rk4", REFERENCE_STEPS)[1], reference)
        runs = []
        for method, setting in settings():
            nfe, x = draw(method, setting)
            runs.append((method, setting, nfe, w2(x, reference)))
            print(f"{name} {row} {method} {setting:g}: {nfe} evaluations, W2 {runs[-1][3]:.4f} "
                  f"(converged {converged:.4f})", flush=True)
        out[row] = (runs, converged)
    return out


def exact_runs():
    """``{row: (runs, converged)}`` of the exact fields' traced lines (module docstring)."""
    import physfield as pf
    from physfield import tracing

    A, B, line_seed = pf.data.draw_pair("gaussian", "8gaussians", 256, 0, None)
    out = {}
    for spec in ("strong", "coulomb"):
        field = pf.fields.build(spec, L=6.0)
        spread = float(np.ptp(np.concatenate([A, B]), axis=0).max())

        def run(method, setting, **bounds):
            return tracing.trace(field, A, B, seed=line_seed, method=method, rtol=setting, **bounds).stats

        ref = run("rk4", 1.0, h_max=0.005 * (6.0 + spread), step_frac=0.1)
        runs = []
        for method, setting in [("rk4", s) for s in EXACT_SCALES] + [(m, r) for m in ("bs32", "dopri5")
                                                                       for r in RTOLS[1:]]:
            bounds = ({"h_max": 0.02 * (6.0 + spread) / setting, "step_frac": 0.25 / setting}
                      if method == "rk4" else {})
            s = run(method, setting, **bounds)
            runs.append((method, setting, s["evaluations"], s["w2"]))
            print(f"exact {spec} {method} {setting:g}: {s['evaluations']} evaluations, W2 {s['w2']:.4f}, "
                  f"arrived {s['arrived']:.3f} (converged {ref['w2']:.4f}, arrived {ref['arrived']:.3f})",
                  flush=True)
        out[f"exact {spec}"] = (runs, ref["w2"])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["toys", "digits", "exact"], nargs="+", default=["toys", "digits", "exact"])
    p.add_argument("--n", type=int, default=2000, help="lines (samples) of a learned model, and reference draws")
    p.add_argument("--work", default="data/nfe", help="where the trained models are kept (reused by a later run)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"command: `python bench/bench_nfe.py {shlex.join(sys.argv[1:])}`; {os.cpu_count()} CPUs, {cpu_name()}",
          flush=True)
    results = {}
    for name in args.only:
        found = exact_runs() if name == "exact" else learned_runs(name, PROBLEMS[name], args.n, work)
        results.update({(name, row): v for row, v in found.items()})
    methods = ("euler", "rk4", "bs32", "dopri5")
    print(f"\nEvaluations to W2 within {TOLERANCE:.0%} of the converged value (-: not reached in the sweep, "
          "n/a: not run)\n")
    print("| problem | model | converged W2 | " + " | ".join(methods) + " | fewest |")
    print("|---|---|---:|" + "---:|" * (len(methods) + 1))
    for (name, row), (runs, converged) in results.items():
        need = needed(runs, converged)
        cells = ["n/a" if m not in need else "-" if need[m] is None else str(need[m]) for m in methods]
        best = min((v for v in need.values() if v is not None), default=None)
        print(f"| {name} | {row} | {converged:.4f} | " + " | ".join(cells) + f" | {best if best else '-'} |")


if __name__ == "__main__":
    main()
