"""Throughput of ``physfield.targets.generate`` (points/s) and where its time goes.

    python bench/bench_targets.py [--batches K] [--json]

Cases (``B = 256`` pairs per minibatch, ``K`` minibatches each, default 12):

- ``toy``      strong field of the README (``L = 6``), ``gaussian -> 8gaussians`` (D = 2), plans
               ``paired`` and ``optimal``;
- ``digits``   strong field of the image experiments (``L = 20``, ``sigma0 = 1``, ``d = 10``),
               ``digits:2 -> digits:3`` (D = 64), plans ``paired`` and ``optimal`` (IFM-MB);
- ``digits``   the Coulomb field (``L = 20``) on the same data, ``paired``;
- ``D=3072``   strong field, ``gaussian:3072 -> gaussian:3072`` (independent draws; the shift of
               the target does not change the work), ``paired``, with the default compression
               (``targets.writer.COMPRESSION``) and with gzip level 1 for comparison.

Each case runs once into a fresh file in a temporary folder after a warm-up run (Numba
compilation). Shares are of the wall time of ``generate``: ``data`` (draws and point
construction), ``plan`` (OT plan and partner draws), ``field`` (``direction``: the field kernel,
plus the Coulomb ESS), ``write`` (HDF5 writes with compression, checksums and the final flush);
the rest (temporary file, fsync, rename) is ``other``. ``MB/s`` is the uncompressed rate of
points and targets written, ``ratio`` the compressed file size over the raw bytes.

The machine's limit. Before the cases the script measures the float64 flop rate of a matrix
product (``F``, GFLOP/s, 2048 x 2048, best of 3) and sets each case's field work against it:
``field/s`` is the rate of ``direction`` alone (points per second of field time) and ``limit``
the rate at which the pair sum would run at ``F``, from the arithmetic it cannot avoid per point
(``K`` pairs of the minibatch's plan, ``N = M = B`` charges)::

    direct path (D < 16):  K (7 D + 25) flops    (the pair's centre offset and squared norm,
                                                  3 D; its two weighted offsets, 4 D; exp and
                                                  sums, about 25)
    GEMM path (D >= 16):   4 (N + M) D + 30 K    (the distances to every charge and the offsets
                                                  back, two products of 2 (N + M) D each; the
                                                  softmax over the pairs)

The Coulomb field has no pairs: ``4 (N + M) D + 30 (N + M)``. ``of limit`` is ``field/s /
limit``: near 100 % the field runs at the machine's speed and only fewer flops would help;
far below, the kernel, not the arithmetic, is what costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from machine import cpu_name  # bench/machine.py, beside this script

import physfield as pf
from physfield import targets

B = 256
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True, "fletcher32": True}


def flop_rate(n=2048, repeat=3):
    """GFLOP/s of a float64 ``n x n`` matrix product (best of ``repeat``)."""
    a = np.random.default_rng(0).normal(size=(n, n))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def field_flops(field, D, plan):
    """The arithmetic one point's field needs, in flops (module docstring)."""
    K = {"paired": B, "optimal": 2 * B - 1}[plan]
    if isinstance(field, pf.CoulombField):
        return 4 * 2 * B * D + 30 * 2 * B
    return K * (7 * D + 25) if D < 16 else 4 * 2 * B * D + 30 * K


def cases():
    image = pf.StrongField(L=20.0, sigma0=1.0, d=10.0)
    toy = pf.StrongField(L=6.0)
    return [
        ("toy strong paired", toy, "gaussian", "8gaussians", "paired", None),
        ("toy strong optimal", toy, "gaussian", "8gaussians", "optimal", None),
        ("digits strong paired", image, "digits:2", "digits:3", "paired", None),
        ("digits strong optimal", image, "digits:2", "digits:3", "optimal", None),
        ("digits coulomb paired", pf.CoulombField(L=20.0), "digits:2", "digits:3", "paired", None),
        ("D=3072 strong paired", pf.StrongField(L=6.0, sigma0=1.0, d=0.5), "gaussian:3072", "gaussian:3072",
         "paired", None),
        ("D=3072 strong paired gzip-1", pf.StrongField(L=6.0, sigma0=1.0, d=0.5), "gaussian:3072",
         "gaussian:3072", "paired", GZIP),
    ]


def run_case(folder, name, field, source, target, plan, compression, batches, flops):
    default = targets.writer.COMPRESSION
    targets.writer.COMPRESSION = compression or default
    try:
        kw = {"batch": B, "plan": plan, "seed": 0}
        targets.generate(field, source, target, B, folder / "warm.h5", overwrite=True, **kw)
        out = folder / f"{name.replace(' ', '_')}.h5"
        res = targets.generate(field, source, target, B * batches, out, **kw)
    finally:
        targets.writer.COMPRESSION = default
    with targets.open_cache(out) as c:
        raw = 2 * c.points.size * 4
        D = c.D
    shares = {k: v / res.seconds for k, v in res.timings.items()}
    shares["other"] = 1 - sum(shares.values())
    field_rate = res.new / res.timings["field"]
    limit = flops * 1e9 / field_flops(field, D, plan)
    return {"case": name, "D": D, "B": B, "n": res.new, "seconds": res.seconds,
            "points_per_s": res.points_per_second, "shares": shares, "field_per_s": field_rate,
            "limit_per_s": limit, "of_limit": field_rate / limit,
            "write_MB_per_s": raw / 1e6 / res.timings["write"], "ratio": out.stat().st_size / raw,
            "compression": (compression or targets.writer.COMPRESSION)["compression"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12, help="minibatches of 256 per case")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    flops = flop_rate()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(Path(tmp), *case, args.batches, flops) for case in cases()]
    env = {"cpu": cpu_name(), "GFLOP/s": round(flops, 1), "physfield": pf.__version__,
           "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__, "threading_layer": numba.threading_layer(),
           "threads": numba.get_num_threads(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2))
        return
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    parts = ("data", "plan", "field", "write", "other")
    print(f"{'case':30s} {'D':>5s} {'n':>6s} {'s':>6s} {'points/s':>9s} " + " ".join(f"{p:>6s}" for p in parts)
          + f" {'MB/s':>6s} {'ratio':>5s} {'field/s':>9s} {'limit':>9s} {'of limit':>8s}")
    for r in rows:
        print(f"{r['case']:30s} {r['D']:5d} {r['n']:6d} {r['seconds']:6.2f} {r['points_per_s']:9.0f} "
              + " ".join(f"{r['shares'][p]:6.1%}" for p in parts)
              + f" {r['write_MB_per_s']:6.0f} {r['ratio']:5.2f} {r['field_per_s']:9.0f} {r['limit_per_s']:9.0f}"
              + f" {r['of_limit']:8.1%}")


if __name__ == "__main__":
    main()
