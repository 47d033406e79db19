"""Throughput of ``physfield.targets.generate`` (points/s) and where its time goes.

    python bench/bench_targets.py [--batches K] [--json]

Cases (``B = 256`` pairs per minibatch, ``K`` minibatches each, default 12):

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numba
import numpy as np

import physfield as pf
from physfield import targets

B = 256
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True, "fletcher32": True}


def cases():
    image = pf.StrongField(L=20.0, sigma0=1.0, d=10.0)
    return [
        ("digits strong paired", image, "digits:2", "digits:3", "paired", None),
        ("digits strong optimal", image, "digits:2", "digits:3", "optimal", None),
        ("digits coulomb paired", pf.CoulombField(L=20.0), "digits:2", "digits:3", "paired", None),
        ("D=3072 strong paired", pf.StrongField(L=6.0, sigma0=1.0, d=0.5), "gaussian:3072", "gaussian:3072",
         "paired", None),
        ("D=3072 strong paired gzip-1", pf.StrongField(L=6.0, sigma0=1.0, d=0.5), "gaussian:3072",
         "gaussian:3072", "paired", GZIP),
    ]


def run_case(folder, name, field, source, target, plan, compression, batches):
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
    return {"case": name, "D": D, "B": B, "n": res.new, "seconds": res.seconds,
            "points_per_s": res.points_per_second, "shares": shares,
            "write_MB_per_s": raw / 1e6 / res.timings["write"], "ratio": out.stat().st_size / raw,
            "compression": (compression or targets.writer.COMPRESSION)["compression"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12, help="minibatches of 256 per case")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(Path(tmp), *case, args.batches) for case in cases()]
    env = {"physfield": pf.__version__, "python": platform.python_version(), "numpy": np.__version__,
           "numba": numba.__version__, "threading_layer": numba.threading_layer(),
           "threads": numba.get_num_threads(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps({"env": env, "rows": rows}, indent=2))
        return
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    parts = ("data", "plan", "field", "write", "other")
    print(f"{'case':30s} {'D':>5s} {'n':>6s} {'s':>6s} {'points/s':>9s} " + " ".join(f"{p:>6s}" for p in parts)
          + f" {'MB/s':>6s} {'ratio':>5s}")
    for r in rows:
        print(f"{r['case']:30s} {r['D']:5d} {r['n']:6d} {r['seconds']:6.2f} {r['points_per_s']:9.0f} "
              + " ".join(f"{r['shares'][p]:6.1%}" for p in parts)
              + f" {r['write_MB_per_s']:6.0f} {r['ratio']:5.2f}")


if __name__ == "__main__":
    main()
