"""Learner comparisons of issue 5, item 6: IFM, IFM-MB, EFM and torchcfm flow matching on one network.

    python bench/bench_learn.py                     # toy table: gaussian->swissroll, 8gaussians->moons
    python bench/bench_learn.py --digits            # digits generation and '2'->'3' translation
    python bench/bench_learn.py --steps 500 --pairs 8gaussians:moons --rows IFM,CFM   # a quick look

Every row trains the same ``learn.models.MLP`` (``--hidden``, ``--depth``, ``--emb``) for the same
``--steps`` on batches of ``--batch`` with the same optimiser (Adam, ``lr``, linear warm-up, gradient
clipping, EMA with ``learn.train``'s ramp), samples ``--n`` points with ``--sampler-steps`` RK4
steps from the EMA weights and is scored against ``--n`` fresh reference draws
(``learn.evaluate.evaluate``: exact W2 by POT; MMD with the fixed bandwidths ``m/4, m/2, m``,
``m`` the median pairwise distance of the reference, so every row is scored by the same kernel).

Rows (``--rows``):

- ``IFM``: strong field (``--L``, ``--sigma0``, ``--d``), ``paired`` plan, direction target,
  cache of ``steps x batch`` points (each training point seen once) from
  ``physfield.targets.generate``, trained by ``learn.train.train``, sampled by
  ``learn.sample.sample`` (``dx/dz = f_x / f_z`` from ``z = eps`` to ``L``);
- ``IFM-MB``: the same with the exact OT plan (``optimal``);
- ``EFM``: Coulomb field (``--L``), ``paired``, sampled by ``learn.sample.sample`` in arc length
  (same step count); only the lines that arrive inside ``Q``'s support are scored, the counts of
  arrived, leaked, reversed and lost lines are in the notes;
- ``IFM L=40``: ``IFM`` at ``--L-far`` (default 40), everything else unchanged unless
  ``--lam-far`` sets its lambda (``--d-half``: ``d = L/2`` at both distances);
- ``CFM`` / ``OT-CFM``: torchcfm's ``ConditionalFlowMatcher`` and
  ``ExactOptimalTransportConditionalFlowMatcher`` (``--fm-sigma``): fresh source/target batches
  every step, the MLP regresses ``u_t`` at ``(t, x_t)`` with ``t`` fed in the ``z`` column
  (``L = 1``, so the embedding sees the same ``t = z / L``), sampled by ``physfield.lines.follow_z``
  with the same RK4 steps from ``t = 0`` to 1.

``cache s`` is the target generation (IFM/EFM only), ``train s`` the optimisation alone. For
digits (``--digits``): ``gaussian:64 -> digits`` and ``digits:2 -> digits:3`` (strong field
``L = 20, sigma0 = 1, d = 10`` of the image experiments unless set), rows IFM, IFM-MB, CFM and
OT-CFM; scores W2 and MMD against the real digits (resampled, so not held out), the Frechet
distance ``FD`` in the feature space of ``learn.classifier`` against its held-out digits (held out
from the classifier only: the caches draw from all 1797 digits) and, for the translation, the
fraction classified as '3' and the mean Euclidean distance between each input and its output.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import pdist

import physfield as pf
from learn import evaluate as ev
from learn import models, sample, slope, train
from physfield import data as pdata
from physfield import lines
from physfield.targets import generate

TOY_ROWS = ("IFM", "IFM-MB", "EFM", "CFM", "OT-CFM", "IFM L=40")
DIGIT_ROWS = ("IFM", "IFM-MB", "CFM", "OT-CFM")


def fm_train(cfg, source, target, D, matcher_name, sigma):
    """Flow matching with torchcfm on the net of ``cfg`` (``learn.train``'s optimiser and choice of
    net: ``auto`` takes the UNet for image data); -> (EMA model, s)."""
    from torchcfm.conditional_flow_matching import (ConditionalFlowMatcher,
                                                    ExactOptimalTransportConditionalFlowMatcher)

    matcher = (ConditionalFlowMatcher if matcher_name == "CFM" else ExactOptimalTransportConditionalFlowMatcher)(sigma)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # torchcfm's OT plan sampler draws its pairs from NumPy's global generator
    shape = pdata.shape(target) if cfg.net in ("auto", "unet") else None
    model = models.build(models.spec(D, D, 1.0, cfg.hidden, cfg.depth, cfg.emb, shape))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        x0, x1 = (torch.from_numpy(pdata.sample(spec, cfg.batch, seed=[cfg.seed, step, side], dim=D)).float()
                  for side, spec in enumerate((source, target)))
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = ((model(torch.cat([t[:, None], xt], dim=1)) - ut) ** 2).sum(dim=1).mean()
        train.optimise(model, ema, opt, loss, cfg, step)
    return ema.eval(), time.perf_counter() - t0


@torch.no_grad()
def fm_sample(model, x0, steps):
    x = torch.from_numpy(x0.astype(np.float32))
    x = lines.follow_z(slope.slope_fn(model, "velocity"), x, 0.0, 1.0, steps).x
    return x.numpy()


def field_of(row, args, L):
    if row == "EFM":
        return pf.CoulombField(L), "paired"
    d = L / 2 if args.d_half else min(args.d, L / 2)
    return pf.StrongField(L, args.sigma0, d), "optimal" if row == "IFM-MB" else "paired"


def run_row(row, source, target, D, args, work):
    """Train and sample one row; -> (samples, their inputs, cache s or None if reused, train s, note)."""
    name = f"{source}_{target}_{row}".replace(":", "").replace(" ", "").replace("=", "")
    cfg = train.TrainConfig(targets=str(work / f"{name}.h5"), out=str(work / name), steps=args.steps,
                            batch=args.batch, seed=args.seed, checkpoint_every=args.steps, hidden=args.hidden,
                            depth=args.depth, emb=args.emb, lr=args.lr, net="mlp",
                            target="direction" if row == "EFM" else args.target)
    if row in ("CFM", "OT-CFM"):
        model, secs = fm_train(cfg, source, target, D, row, args.fm_sigma)
        x0 = pdata.sample(source, args.n, seed=args.sample_seed, dim=D)
        return fm_sample(model, x0, args.sampler_steps), x0, None, secs, ""
    L = args.L_far if row.startswith("IFM L=") else args.L
    field, plan = field_of(row, args, L)
    lam = args.lam_far if row.startswith("IFM L=") and args.lam_far is not None else args.lam
    gen = generate(field, source, target, args.steps * args.batch, cfg.targets, batch=args.batch, plan=plan,
                   lam=lam, seed=args.seed, dim=D, resume=True)
    shutil.rmtree(cfg.out, ignore_errors=True)
    result = train.train(cfg)
    model, run = sample.load_model(cfg.out, weights=args.weights)
    res = sample.sample(model, run, args.n, steps=args.sampler_steps, seed=args.sample_seed)
    s = res.stats
    if s.get("sampler") == "arc":
        note = (f"arc length: {s['arrived']} arrived, {s['leaked']} leaked, {s['reversed']} reversed, "
                f"{s['lost']} lost of {s['n']}; scored on the arrived")
    else:
        note = f"f_z<=0 on {s['lines_fz_nonpositive']} lines" if s["fz_nonpositive"] else ""
    return res.samples, res.inputs, (gen.seconds if gen.new else None), result.seconds, note


def score(samples, inputs, target, D, args):
    """W2, MMD (fixed bandwidths), the mean input-output distance and, for digits, the classifier's
    Frechet distance and intended-class accuracy (``learn.classifier.report``)."""
    ref = pdata.sample(target, args.n, seed=ev.EVAL_SEED, dim=D)
    m = float(np.median(pdist(ref)))
    ok = np.isfinite(samples).all(axis=1)
    report, _, _ = ev.evaluate(samples[ok], target, n=args.n, bandwidths=[m / 4, m / 2, m])
    report["io"] = float(np.linalg.norm(samples[ok] - inputs[ok], axis=1).mean())
    report["bad"] = int((~ok).sum())
    if target.startswith("digits"):
        from learn import classifier

        report.update(classifier.report(samples[ok], target))
    return report


def table(source, target, D, rows, args, work, translation=False):
    digits = target.startswith("digits")
    head = ("| row | W2 | MMD |" + (" FD |" if digits else "") + (" acc '3' | in-out dist |" if translation else "")
            + " cache s | train s | notes |")
    lines = [f"### {source} -> {target}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        samples, inputs, gen_s, train_s, note = run_row(row, source, target, D, args, work)
        r = score(samples, inputs, target, D, args)
        if r["bad"]:
            note += f"; {r['bad']} non-finite samples left out"
        cells = [row, f"{r['w2']:.3f}", f"{r['mmd']:.4f}"] + ([f"{r['fd']:.2f}"] if digits else [])
        cells += [f"{r['accuracy_intended']:.1%}", f"{r['io']:.2f}"] if translation else []
        cells += ["-" if row.endswith("CFM") else ("reused" if gen_s is None else f"{gen_s:.1f}"), f"{train_s:.1f}",
                  note]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if not translation:
        r = score(pdata.sample(target, args.n, seed=args.sample_seed, dim=D), np.zeros((args.n, D)), target, D, args)
        lines.append(f"| floor: {args.n} fresh draws of {target} | {r['w2']:.3f} | {r['mmd']:.4f} |"
                     + (f" {r['fd']:.2f} |" if digits else "") + " - | - | sampling noise of the scores |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", nargs="+", default=["gaussian:swissroll", "8gaussians:moons"],
                   help="toy pairs SOURCE:TARGET")
    p.add_argument("--rows", default=",".join(TOY_ROWS))
    p.add_argument("--digits", action="store_true", help="the digits tables instead of the toy ones")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=2000, help="samples generated and reference draws")
    p.add_argument("--sampler-steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--emb", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--L", type=float, default=None, help="plate distance (toys 6, digits 20)")
    p.add_argument("--L-far", type=float, default=40.0)
    p.add_argument("--sigma0", type=float, default=1.0)
    p.add_argument("--d", type=float, default=None, help="end length of the strong field (toys 0.5, digits 10)")
    p.add_argument("--d-half", action="store_true",
                   help="d = L/2 at every L (the pure sine bridge: the field lines in (z/L, x) do not depend on L)")
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--lam-far", type=float, default=None,
                   help="lambda of the L-far row (default --lam); the training noise is lambda sqrt(min(z, L - z)), "
                        "so lambda sqrt(L / L_far) keeps it the same in units of z/L")
    p.add_argument("--fm-sigma", type=float, default=0.0)
    p.add_argument("--target", choices=("direction", "velocity"), default="direction",
                   help="regression target of the strong-field rows (EFM: always direction)")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--work", default="/tmp/bench_learn", help="caches and runs (reused caches are marked)")
    args = p.parse_args()
    args.L = args.L or (20.0 if args.digits else 6.0)
    args.d = args.d or (10.0 if args.digits else 0.5)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(["python bench/bench_learn.py", *os.sys.argv[1:]])
    print(f"command: `{cmd}`\n\nbudget: {args.steps} steps x batch {args.batch}, MLP {args.hidden}x{args.depth} "
          f"(emb {args.emb}), lr {args.lr}, EMA 0.999, {args.sampler_steps} RK4 steps, {args.n} samples vs "
          f"{args.n} reference draws; strong L={args.L:g} sigma0={args.sigma0:g} d={'L/2' if args.d_half else f'{args.d:g}'} lambda={args.lam:g}; "
          f"{args.target} target; torchcfm sigma={args.fm_sigma:g}; {args.weights} weights; torch {torch.__version__}, "
          f"{args.threads} thread(s); {os.cpu_count()} CPUs {platform.processor() or platform.machine()}\n",
          flush=True)
    rows = [r.strip() for r in args.rows.split(",")]
    if args.digits:
        rows = [r for r in rows if r in DIGIT_ROWS]
        out = table("gaussian", "digits", 64, rows, args, work)
        out += [""] + table("digits:2", "digits:3", 64, rows, args, work, translation=True)
    else:
        out = []
        for pair in args.pairs:
            source, target = pair.split(":", 1)
            out += table(source, target, 2, rows, args, work) + [""]
    print("\n" + "\n".join(out))


if __name__ == "__main__":
    main()
