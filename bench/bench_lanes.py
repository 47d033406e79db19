"""Would a kernel variant chosen per CPU win at D = 2?  The layout constants of the CPU pair kernel, measured.

    python bench/bench_lanes.py                  # 256^2, 1024^2, 4096^2 pairs (about 2 min on 2 cores)
    python bench/bench_lanes.py --sizes 1024

``physfield.kernels.simd`` fixes two layout constants: ``LANES`` (partial maxima kept side by
side, 8: one AVX-512 register of float64) and ``BLOCK`` (pairs per block of scratch, 512). On a
CPU with narrower vector units another pair might win, and a kernel could pick its variant by
measuring at first use. This script compiles ``simd.pair_direct`` (the paired-plan kernel that
the D = 2 rows of ``bench_direction.py`` time) once per ``(LANES, BLOCK)`` from the module's own
source with the two constants replaced, runs every variant on the same paired configuration
(``gaussian`` sources, ``8gaussians`` sinks, points on the pairs' strings at uniform ``t``),
checks that they agree, and prints each variant's median time and its ratio to the shipped one,
with the time per pair and core.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name

import physfield as pf
from physfield.kernels import simd

VARIANTS = [(8, 512), (4, 512), (16, 512), (8, 256), (8, 1024), (4, 256), (16, 1024)]  # (LANES, BLOCK); first: shipped


def variant(lanes, block, where):
    """``simd`` compiled with ``LANES = lanes`` and ``BLOCK = block`` (no on-disk cache)."""
    src = Path(simd.__file__).read_text().replace("cache=True", "cache=False")
    src = re.sub(r"^LANES = \d+", f"LANES = {lanes}", src, flags=re.M)
    src = re.sub(r"^BLOCK = \d+", f"BLOCK = {block}", src, flags=re.M)
    path = Path(where) / f"simd_{lanes}_{block}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interleaved_medians(calls, budget=0.2, rounds=9):
    """Median seconds per call of each of ``calls``, timed in interleaved rounds so that a drift
    of the machine (clock, neighbours) falls on every variant alike."""
    reps = {}
    for key, f in calls.items():
        f()
        start = time.perf_counter()
        f()
        reps[key] = max(3, int(budget / max(time.perf_counter() - start, 1e-6)))
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, f in calls.items():
            start = time.perf_counter()
            for _ in range(reps[key]):
                f()
            times[key].append((time.perf_counter() - start) / reps[key])
    return {key: statistics.median(v) for key, v in times.items()}


def configuration(n, seed=0):
    """``pair_direct``'s arguments for ``n`` points on ``n`` paired strings (``D = 2``)."""
    A, B, _ = pf.data.draw_pair("gaussian", "8gaussians", n, seed, None)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.02, 0.98, n)
    sigma = 0.5 * np.sin(np.pi * t) + 0.05  # a string's width: small at the plates, widest midway
    X = (1 - t[:, None]) * A + t[:, None] * B + sigma[:, None] * rng.normal(size=A.shape)
    AT, BT = np.ascontiguousarray(A.T), np.ascontiguousarray(B.T)
    ca, cb = 1 / 6 + (1 - t), t - 1 / 6  # the offsets' coefficients (any values do)
    return (t, 1 / (2 * sigma**2), X, AT, BT, BT - AT, np.full(n, -np.log(n)), ca, cb,
            np.empty_like(X), np.empty(n), np.empty(n), simd.CHUNK)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096], help="points = pairs")
    args = p.parse_args()
    cores = os.cpu_count()
    print(f"command: `python bench/bench_lanes.py {' '.join(sys.argv[1:])}`; {cores} CPUs, {cpu_name()}\n")
    with tempfile.TemporaryDirectory() as where:
        kernels = {v: variant(*v, where) for v in VARIANTS}
        print("| points x pairs | " + " | ".join(f"LANES {a}, BLOCK {b}" for a, b in VARIANTS)
              + " | ns per pair and core (shipped) |")
        print("|---|" + "---:|" * (len(VARIANTS) + 1))
        for n in args.sizes:
            arg = configuration(n)
            outs = {}
            for v, module in kernels.items():
                module.pair_direct(*arg)
                outs[v] = [o.copy() for o in arg[-4:-1]]
            seconds = interleaved_medians({v: lambda m=m: m.pair_direct(*arg) for v, m in kernels.items()})
            ms = {v: 1e3 * s for v, s in seconds.items()}
            shipped = VARIANTS[0]
            for v in VARIANTS[1:]:
                for a, b in zip(outs[v], outs[shipped]):
                    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
            cells = [f"{ms[v]:.3g} ms ({ms[shipped] / ms[v]:.2f}x)" for v in VARIANTS]
            per_pair = ms[shipped] * 1e6 * cores / n**2
            print(f"| {n} x {n} | " + " | ".join(cells) + f" | {per_pair:.2f} |", flush=True)
    print("\n(x: the shipped variant's time over this one's; above 1 this variant is faster.)")


if __name__ == "__main__":
    main()
