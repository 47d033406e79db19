"""Dense plans and line stepping: what `physfield trace --plan independent` costs, side by side.

Two tables, in one run:

1. The pair sum of a dense plan (``independent``, N x N pairs, D = 2) at points near the source
   plate, between the plates and near the sink plate (sine-bridge widths): each point visiting
   only the pairs it can see (:mod:`physfield.kernels.near`) against the same kernel visiting
   every pair, and the largest difference of their outputs (they drop the same terms).
2. ``physfield trace --field strong --plan independent`` (256 x 256, 512 lines) with fixed RK4
   steps and with the Bogacki-Shampine pair (the default), each with and without pruning: seconds,
   evaluations and W2.

    python bench/bench_trace.py            # about 2 minutes on 2 cores
    python bench/bench_trace.py --quick    # smaller sizes, 64 lines

Run it on an idle machine; it prints the CPU first.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine import cpu_name  # bench/machine.py, beside this script

import physfield as pf
from physfield import tracing
from physfield.kernels import engine
from physfield.kernels import numba_cpu as cpu


def timed(fn, *args, repeat=3):
    """``(best seconds of repeat calls, result)`` of ``fn(*args)``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def pair_sums(N, n=256):
    A, B, _ = pf.data.draw_pair("gaussian", "8gaussians", N, 0, None)
    I, J = np.repeat(np.arange(N), N), np.tile(np.arange(N), N)
    logw = np.full(N * N, -2 * np.log(N))
    paths = engine.prepare_paths(cpu, np, A, B, I, J, logw, False)
    rng = np.random.default_rng(0)
    print(f"\n### Pair sum of the independent plan, {N} x {N} pairs, D = 2, {n} points per level\n")
    print("| t = z / L | near pairs (ms) | every pair (ms) | speed-up | max difference |")
    print("|---:|---:|---:|---:|---:|")
    for t0 in (1e-3, 1e-2, 0.05, 0.5, 0.95, 0.99, 0.999):
        t = np.full(n, t0)
        width = np.sin(np.pi * t)
        X = (1 - t0) * A[rng.integers(N, size=n)] + t0 * B[rng.integers(N, size=n)]
        X += rng.normal(size=X.shape) * width[:, None]
        inv2s2 = 1 / (2 * width**2)
        ca, cb = np.ones(n), np.full(n, -0.5)  # any weights of the two plates' offsets
        engine.path_terms(cpu, np, X[:2], t[:2], inv2s2[:2], ca[:2], cb[:2], paths)  # compiled before timing
        near, got = timed(engine.path_terms, cpu, np, X, t, inv2s2, ca, cb, paths)
        every, want = timed(engine.path_terms, cpu, np, X, t, inv2s2, ca, cb, paths._replace(near=None))
        diff = max(float(np.abs(g - w).max() / max(1.0, np.abs(w).max())) for g, w in zip(got, want))
        print(f"| {t0:g} | {near * 1e3:.1f} | {every * 1e3:.1f} | {every / near:.1f}x | {diff:.1e} |")


def traces(lines):
    A, B, seed = pf.data.draw_pair("gaussian", "8gaussians", 256, 0, None)
    field = pf.StrongField(L=6.0)
    print(f"\n### physfield trace --field strong --plan independent (256 x 256, {lines} lines)\n")
    print("| method | pruning | seconds | evaluations | w2 | arrived |")
    print("|---|---|---:|---:|---:|---:|")
    tracing.trace(field, A, B, plan="independent", n_lines=4, seed=seed)  # compile
    share = cpu.NEAR_SHARE
    for method in ("rk4", "bs32"):
        for prune in (False, True):
            cpu.NEAR_SHARE = share if prune else 0.0
            r = tracing.trace(field, A, B, plan="independent", n_lines=lines, seed=seed, method=method)
            s = r.stats
            print(f"| {method} | {'near pairs' if prune else 'every pair'} | {s['seconds']:.1f} | {s['evaluations']} "
                  f"| {s['w2']:.4f} | {s['arrived']:.3f} |")
    cpu.NEAR_SHARE = share


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 x 256 pair sums, 64 lines")
    args = parser.parse_args()
    print(f"- cpu: {cpu_name()}, {os.cpu_count()} cores")
    print(f"- load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    pair_sums(256 if args.quick else 1024)
    traces(64 if args.quick else 512)
    print(f"\n- load average (1 min) at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
