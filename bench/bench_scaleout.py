"""Training targets on one process, a local process pool and Ray, side by side in one run.

    python bench/bench_scaleout.py [--batches K] [--shard-batches S] [--ray]

One run (``B = 256`` pairs per minibatch, ``K`` minibatches, default 256) of each case:

- ``digits``  strong field of the image experiments (``L = 20``, ``sigma0 = 1``, ``d = 10``),
              ``digits:2 -> digits:3`` (D = 64), ``paired``;
- ``D=3072``  strong field, ``gaussian:3072 -> gaussian:3072``, ``paired`` (K / 8 minibatches).

computed by ``generate`` in this process (no shards), then in shards of ``S`` minibatches
(default 8) by ``engines.Local()`` (one process, the shards' own overhead), ``engines.Pool(1)``,
``engines.Pool(2)`` and with ``--ray`` ``engines.Ray()`` on a local Ray with 2 CPUs. Reported:
wall seconds, points per second, the ratio to the single-process rate, and the seconds of the
final join (``merge``: the virtual datasets; ``copy``: the self-contained file, measured once
for the Pool(2) shards). A warm-up run in a subprocess fills Numba's cache first, and one in
this process loads it, so that no engine pays for compilation; a pool's times include starting
its processes (spawn, imports, loading the cache: about a second). Every sharded cache is checked equal to the single-process one.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import physfield as pf
from physfield.targets import engines, generate, shards

B = 256


def cases(batches):
    return [
        ("digits", pf.StrongField(L=20.0, sigma0=1.0, d=10.0), "digits:2", "digits:3", batches * B),
        ("D=3072", pf.StrongField(L=6.0, sigma0=1.0, d=3.0), "gaussian:3072", "gaussian:3072", max(1, batches // 8) * B),
    ]


def same(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(np.array_equal(fa[k][()], fb[k][()]) for k in ("points", "targets", "log_norm", "ess"))


def warm_up():
    """Fill Numba's cache in another process (both cases' kernels)."""
    code = ("import physfield as pf, tempfile, os\n"
            "from physfield.targets import generate\n"
            "d = tempfile.mkdtemp()\n"
            "generate(pf.StrongField(L=20.0, sigma0=1.0, d=10.0), 'digits:2', 'digits:3', 256, os.path.join(d, 'a.h5'))\n"
            "generate(pf.StrongField(L=6.0, sigma0=1.0, d=3.0), 'gaussian:3072', 'gaussian:3072', 256, "
            "os.path.join(d, 'b.h5'))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=256, help="minibatches of 256 (digits; D=3072 gets a quarter)")
    parser.add_argument("--shard-batches", type=int, default=8, help="minibatches per shard")
    parser.add_argument("--ray", action="store_true", help="add a local Ray with 2 CPUs")
    args = parser.parse_args()
    warm_up()
    print(f"# bench_scaleout: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print(f"# python bench/bench_scaleout.py --batches {args.batches} --shard-batches {args.shard_batches}"
          f"{' --ray' if args.ray else ''}\n")
    print("| case | n | engine | seconds | points/s | vs one process | join (s) | equal |")
    print("|---|---:|---|---:|---:|---:|---:|:-:|")
    ray_engine = None
    if args.ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_engine = engines.Ray()
    for name, field, source, target, n in cases(args.batches):
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            generate(field, source, target, B, folder / "warm.h5", batch=B)
            t0 = time.perf_counter()
            generate(field, source, target, n, folder / "one.h5", batch=B)
            single = time.perf_counter() - t0
            print(f"| {name} | {n} | one process | {single:.2f} | {n / single:,.0f} | 1.00 | - | - |")
            runs = [("Local (shards)", engines.Local()), ("Pool(1)", engines.Pool(1)), ("Pool(2)", engines.Pool(2))]
            if ray_engine is not None:
                runs.append(("Ray (2 CPUs)", ray_engine))
            for label, engine in runs:
                out = folder / f"{label.split()[0]}.h5"
                t0 = time.perf_counter()
                result = generate(field, source, target, n, out, batch=B, engine=engine,
                                  shard_points=args.shard_batches * B)
                seconds = time.perf_counter() - t0
                if engine is not ray_engine:
                    engine.close()
                print(f"| {name} | {n} | {label} | {seconds:.2f} | {n / seconds:,.0f} | {single / seconds:.2f} | "
                      f"{result.timings['merge']:.3f} | {'yes' if same(out, folder / 'one.h5') else 'NO'} |")
            pool_shards = shards.layout(engine_run(field, source, target), n, folder / "Pool(2).h5",
                                        args.shard_batches * B)
            t0 = time.perf_counter()
            shards.merge(engine_run(field, source, target), pool_shards, folder / "copy.h5", copy=True)
            print(f"| {name} | {n} | copy of the Pool(2) shards | - | - | - | {time.perf_counter() - t0:.3f} | "
                  f"{'yes' if same(folder / 'copy.h5', folder / 'one.h5') else 'NO'} |")
    if ray_engine is not None:
        import ray

        ray.shutdown()


def engine_run(field, source, target):
    from physfield.targets import sampler

    return sampler.make_run(field, source, target, B, "paired", 0.05, None, None, None, None, 0, None, "auto", False)


if __name__ == "__main__":
    main()
