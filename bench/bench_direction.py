"""Throughput of ``StrongField.direction`` against three baselines, side by side in one run.

    python bench/bench_direction.py [--quick] [--sizes 256x256x2 256x256x3072:independent ...] [--profile]

A size ``nxNxD[:plan]`` is ``n`` points, ``N`` sources and ``N`` sinks in ``D`` dimensions;
``paired`` (default) has ``K = N`` pairs, ``independent`` ``K = N^2``. Every method computes,
at points ``(z, x)`` with ``t = z / L`` and the pairs ``(a_k, b_k)`` of the plan (the README's strong field),

    rho_k = x - a_k - t (b_k - a_k),    l_k = log pi_k - |rho_k|^2 / (2 sigma(z)^2)
    v_k   = (b_k - a_k) / L + s(z) rho_k
    E_x / E_z = sum_k softmax(l)_k v_k,   log E_z = logsumexp(l) - D/2 log(2 pi sigma^2)

and returns the unit direction ``u = (1, E_x/E_z) / |.|`` and ``log|E|``:

(a) ``loop``:   the published code's shape, a Python loop over pairs with one vectorised torch
                float32 call over all points per pair. Where the published code forms
                ``exp(-|rho|^2 / 2 sigma^2) / sigma^D`` (0/0 at D = 3072), this one keeps a running
                max and rescales its two accumulators (online log-sum-exp): one more ``(n, D)``
                multiply per pair, and finite at any D.
(b) ``dense``:  one torch broadcast over ``(points, pairs, D)`` then ``logsumexp`` and an einsum,
                float32 and float64, in point chunks of at most ``DENSE_ELEMENTS`` entries.
(c) ``keops``:  a PyKeOps LazyTensor reduction, float32: ``Max_SumShiftExpWeight`` of ``l_ij``
                with weight ``(1, v_ij)`` gives ``max_j l``, ``sum_j e^(l - max)`` and
                ``sum_j e^(l - max) v_j`` in one pass (what ``sumsoftmaxweight`` runs internally,
                plus the log-sum-exp).
(d) physfield ``backend="numba"`` (``method="auto"``) in float64 and float32, ``bound f64`` and
    ``bound f32`` (``field.bind(A, B, plan)`` once outside the timing, then ``bound.direction(P)``
    timed: the charges' validation, plan support, centring and pair distances are paid once, as
    they are for the baselines), and ``backend="numpy"`` (the reference) at sizes with
    ``n K D <= NUMPY_MAX_WORK``.
(e) on a machine with a GPU, ``backend="cupy"``: ``cupy f64`` end to end from NumPy arrays
    (transfers included) and ``cupy bound f64`` (bound once, points already on the GPU, timed to
    the device's synchronisation).

Baselines get their inputs as ready torch tensors (pairs gathered, ``sigma(z)`` and ``s(z)``
computed); ``physfield f64/f32`` are timed end to end from NumPy arrays (validation and plan included).
When ``n K D`` exceeds ``--max-work``, the baselines run on a random subset of ``K'`` pairs and
their times are scaled by ``K / K'`` (marked ``~``): every baseline is linear in ``K``. Their
agreement is then checked against physfield on the same subset plan.

FLOPs of the GEMM form at large D: ``X A^T, X B^T`` (squared distances) and ``R A, C B``
(weighted offsets), ``4 * 2 n D N``; the kernel's rate is that over its time. Its yardstick is
the *share*: the time of those four NumPy float64 products at the size's shapes over the time of
the call, each call timed between two runs of the products in interleaved rounds
(:func:`interleaved_ratios`), so that the machine's drift falls on both; the issue asks for 80 %.

At D = 2 the yardstick is PyKeOps: the ratio (time of ``keops f32``) / (time of the physfield
call), each physfield call timed between two PyKeOps calls in interleaved rounds
(:func:`interleaved_ratios`); the issue asks for 5x.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import numba
import numpy as np

# physfield before torch: physfield.kernels.numba_cpu sets OMP_WAIT_POLICY for Numba's OpenMP workers, which
# libgomp reads once, when the first library that uses it (torch's or Numba's) is loaded.
import physfield as pf
from physfield import plans, validate
from physfield.fields.gaussian_path import BoundGaussianPath
from physfield.kernels import Backend, engine, simd
from physfield.kernels.backend import gpu_available
from physfield.kernels import numba_cpu as cpu

import torch  # noqa: E402  (after physfield, see above)

FIELD = {"L": 6.0, "sigma0": 1.0, "d": 0.5}
SIZES = ["256x256x2", "1024x1024x2", "4096x4096x2", "64x256x3072", "256x256x3072",
         "256x256x3072:independent"]
QUICK = ["256x256x2", "64x256x3072"]
DENSE_ELEMENTS = 2**25
NUMPY_MAX_WORK = 256 * 256 * 2
TARGET_LOOP, TARGET_SHARE, TARGET_KEOPS = 30.0, 0.80, 5.0
#: the published per-pair loop as quoted in the issue (ms, 2-core CPU, medians): quoted, not measured here
ISSUE_LOOP_MS = {"256x256x2": 130, "1024x1024x2": 850, "4096x4096x2": 4300, "64x256x3072": 300, "256x256x3072": 1000}


# ----------------------------------------------------------------------------- problem


class Case:
    """Charges, plan support and points of one size; points sit near random strings."""

    def __init__(self, spec, seed=0):
        shape, _, plan = spec.partition(":")
        self.n, self.N, self.D = (int(v) for v in shape.split("x"))
        self.plan = plan or "paired"
        self.spec = spec
        rng = np.random.default_rng(seed)
        L, D = FIELD["L"], self.D
        self.A = rng.standard_normal((self.N, D))
        self.B = rng.standard_normal((self.N, D)) + 3.0 / math.sqrt(D)
        self.I, self.J, self.logw = plans.support(self.plan, self.A, self.B)
        z = rng.uniform(0.05 * L, 0.95 * L, self.n)
        k = rng.integers(0, len(self.I), self.n)
        t = (z / L)[:, None]
        sigma = pf.StrongField(**FIELD).widths(z)[0]
        X = (1 - t) * self.A[self.I[k]] + t * self.B[self.J[k]] + sigma[:, None] * rng.standard_normal((self.n, D))
        self.P = np.column_stack([z, X])
        self.rng = rng

    @property
    def K(self):
        return len(self.I)

    def subset(self, max_work):
        """``(plan, I, J, logw)`` of at most ``max_work / (n D)`` pairs (the whole plan if it fits)."""
        keep = max(1, min(self.K, max_work // (self.n * self.D)))
        if keep == self.K:
            return self.plan, self.I, self.J, self.logw
        pick = np.sort(self.rng.choice(self.K, keep, replace=False))
        pi = np.zeros((self.N, self.N))
        pi[self.I[pick], self.J[pick]] = 1.0 / keep
        return pi, self.I[pick], self.J[pick], np.full(keep, -math.log(keep))

    def torch_inputs(self, I, J, logw, dtype):
        """Baseline inputs: ``X, t, sigma, s, a = A[I], b = B[J], log pi`` as torch tensors."""
        z = self.P[:, 0]
        sigma, s = pf.StrongField(**FIELD).widths(z)
        arrays = (self.P[:, 1:], z / FIELD["L"], sigma, s, self.A[I], self.B[J], logw)
        return [torch.as_tensor(np.ascontiguousarray(a), dtype=dtype) for a in arrays]


# ----------------------------------------------------------------------------- baselines


def finish(slope, log_ez):
    """Unit rows ``(1, slope) / sqrt(1 + |slope|^2)`` and ``log|E| = log E_z + log1p(|slope|^2)/2``."""
    sq = (slope * slope).sum(1)
    uz = torch.rsqrt(1 + sq)
    return torch.cat([uz[:, None], slope * uz[:, None]], 1), log_ez + 0.5 * torch.log1p(sq)


def log_gauss(sigma, D):
    return -D / 2 * torch.log(2 * math.pi * sigma**2)


def loop_direction(X, t, sigma, s, a, b, logw):
    """(a) One vectorised call over all points per pair, online log-sum-exp accumulation."""
    n, D = X.shape
    L = FIELD["L"]
    inv2s2 = 0.5 / sigma**2
    m = torch.full((n,), -math.inf, dtype=X.dtype)
    S = torch.zeros(n, dtype=X.dtype)
    V = torch.zeros(n, D, dtype=X.dtype)
    for k in range(len(a)):
        d = b[k] - a[k]
        rho = X - a[k] - t[:, None] * d
        l = logw[k] - inv2s2 * (rho * rho).sum(1)
        m_new = torch.maximum(m, l)
        scale, e = torch.exp(m - m_new), torch.exp(l - m_new)
        S = S * scale + e
        V = V * scale[:, None] + e[:, None] * (d / L + s[:, None] * rho)
        m = m_new
    return finish(V / S[:, None], m + torch.log(S) + log_gauss(sigma, D))


def dense_direction(X, t, sigma, s, a, b, logw):
    """(b) Broadcast over ``(points, pairs, D)``, point chunks of <= ``DENSE_ELEMENTS`` entries."""
    n, D = X.shape
    L = FIELD["L"]
    d = b - a
    inv2s2 = 0.5 / sigma**2
    slope = torch.empty_like(X)
    log_ez = torch.empty(n, dtype=X.dtype)
    step = max(1, DENSE_ELEMENTS // (len(a) * D))
    for p in range(0, n, step):
        q = slice(p, p + step)
        rho = X[q, None, :] - a - t[q, None, None] * d
        l = logw - inv2s2[q, None] * (rho * rho).sum(-1)
        log_ez[q] = torch.logsumexp(l, 1)
        w = torch.exp(l - log_ez[q, None])
        slope[q] = torch.einsum("pk,pkd->pd", w, d / L + s[q, None, None] * rho)
    return finish(slope, log_ez + log_gauss(sigma, D))


def keops_direction(X, t, sigma, s, a, b, logw):
    """(c) PyKeOps: one ``Max_SumShiftExpWeight`` reduction over the pairs ``j`` of ``l_ij``, weight ``(1, v_ij)``."""
    from pykeops.torch import LazyTensor

    n, D = X.shape
    L = FIELD["L"]
    x_i, t_i = LazyTensor(X[:, None, :]), LazyTensor(t[:, None, None])
    h_i, s_i = LazyTensor((0.5 / sigma**2)[:, None, None]), LazyTensor(s[:, None, None])
    one_i = LazyTensor(torch.ones(n, 1, 1, dtype=X.dtype))
    a_j, b_j, lw_j = LazyTensor(a[None]), LazyTensor(b[None]), LazyTensor(logw[None, :, None])
    d_j = b_j - a_j
    rho = x_i - a_j - t_i * d_j
    l = lw_j - h_i * (rho**2).sum(dim=2)
    out = l.reduction("Max_SumShiftExpWeight", other=one_i.concat(d_j / L + s_i * rho), axis=1)
    m, S, V = out[:, 0], out[:, 1], out[:, 2:]
    return finish(V / S[:, None], m + torch.log(S) + log_gauss(sigma, D))


BASELINES = {"loop f32": (loop_direction, torch.float32),
             "dense f32": (dense_direction, torch.float32),
             "dense f64": (dense_direction, torch.float64),
             "keops f32": (keops_direction, torch.float32)}


def keops_status():
    """``None`` when PyKeOps imports and compiles a tiny reduction, else the reason it does not."""
    try:
        import pykeops
        from pykeops.torch import LazyTensor

        pykeops.set_verbose(False)
        x = torch.ones(3, 1, 2)
        (LazyTensor(x) - LazyTensor(x.transpose(0, 1))).sum(dim=2).sum(dim=1)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


# ----------------------------------------------------------------------------- timing


def timed(fn, repeats, budget):
    """Warm-up call, then the median ``time.perf_counter`` seconds of ``repeats`` calls
    (at least 3; stops after ``budget`` seconds). Returns ``(seconds, result of the warm-up)``."""
    result = fn()
    times, start = [], time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def matmul_rate(repeats=21):
    """Median seconds and GFLOP/s of a NumPy float64 ``(256 x 3072) @ (3072 x 256)``."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((256, 3072)), rng.standard_normal((3072, 256))
    sec, _ = timed(lambda: x @ y, repeats, budget=10.0)
    return sec, 2 * 256 * 3072 * 256 / sec / 1e9


def gemm_flops(case):
    """FLOPs of the four products of the GEMM form, ``4 * 2 n D N`` (``N = M`` charges)."""
    return 4 * 2 * case.n * case.D * case.N


class StageTimer:
    """Exclusive wall time per function, by wrapping module attributes inside a ``with`` block.

    A wrapped call's time minus the time of wrapped calls inside it is added to its label, so
    the labels add up to the outermost call. Only the bench process is touched; nothing is edited.
    """

    def __init__(self, targets):
        self.targets = [(owner, name) for owner, name in targets if hasattr(owner, name)]
        self.totals = defaultdict(float)
        self.stack = []

    def wrap(self, fn, label):
        def timed_call(*args, **kwargs):
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                self.totals[label] += elapsed - self.stack.pop()
                if self.stack:
                    self.stack[-1] += elapsed

        return timed_call

    @contextlib.contextmanager
    def active(self):
        saved = [(owner, name, getattr(owner, name)) for owner, name in self.targets]
        try:
            for owner, name, fn in saved:
                label = f"{getattr(owner, '__name__', '?').replace('physfield.', '')}.{name}"
                setattr(owner, name, self.wrap(fn, label))
            yield self
        finally:
            for owner, name, fn in saved:
                setattr(owner, name, fn)


def own_functions(module):
    """``(module, name)`` of the functions (and Numba dispatchers) a module defines."""
    return [(module, name) for name, obj in vars(module).items()
            if callable(obj) and not isinstance(obj, type) and not name.startswith("__")
            and getattr(getattr(obj, "py_func", obj), "__module__", None) == module.__name__]


#: physfield's call path whose exclusive time is reported: the public call, its helpers, and
#: every function of the engine and of the CPU kernels (so the list follows the code)
PROFILE_TARGETS = ([(pf.StrongField, "direction"), (BoundGaussianPath, "direction"), (pf.StrongField, "widths"),
                    (Backend, "gaussian_path"), (validate, "charges"),
                   (validate, "points"), (plans, "support"), (simd, "pair_direct"), (simd, "pair_softmax")]
                   + own_functions(engine) + own_functions(cpu))


def stage_profile(call, repeats):
    """Per-stage exclusive milliseconds of ``call`` (median over ``repeats`` instrumented calls)."""
    call()
    runs = []
    for _ in range(repeats):
        timer = StageTimer(PROFILE_TARGETS)
        with timer.active():
            call()
        runs.append(dict(timer.totals))
    labels = sorted({k for r in runs for k in r}, key=lambda k: -statistics.median(r.get(k, 0) for r in runs))
    return {k: 1e3 * statistics.median(r.get(k, 0.0) for r in runs) for k in labels}


def four_gemms(case):
    """The four NumPy float64 products of the GEMM form at this case's shapes, ``X A^T, X B^T,
    R A, C B``, as one call."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((case.n, case.D))
    A, B = case.A, case.B
    R = rng.random((case.n, case.N))
    return lambda: (X @ A.T, X @ B.T, R @ A, R @ B)


def interleaved_ratios(baseline, calls, rounds, block=0.02):
    """Per label of ``calls``: the median over ``rounds`` of (seconds of ``baseline``) / (seconds
    of the call), the baseline (the four products of the GEMM form, or PyKeOps) timed just before
    and just after each call, so that the machine's drift (clock, neighbours: 1.5x within
    minutes on a shared VM) falls on both alike. Each timing is the mean over a block of
    back-to-back calls lasting about ``block`` seconds (one call when it is longer). A single
    sub-millisecond call timed right after another library's is slower with its caches and branch
    predictors cold (measured at 256 x 256 x 2: bound f64 0.26 ms right after a PyKeOps call, 0.20
    ms in a loop of calls, 0.24 ms after a 1 ms sleep); the blocks time both libraries warm."""
    def timer(fn):
        t0 = time.perf_counter()
        fn()
        reps = max(1, round(block / (time.perf_counter() - t0)))

        def seconds():
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps
        return seconds

    baseline = timer(baseline)
    calls = {label: timer(fn) for label, fn in calls.items()}
    ratios = {label: [] for label in calls}
    for _ in range(rounds):
        for label, seconds in calls.items():
            before, call, after = baseline(), seconds(), baseline()
            ratios[label].append((before + after) / 2 / call)
    return {label: statistics.median(v) for label, v in ratios.items()}


# ----------------------------------------------------------------------------- run


def machine_facts():
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.processor())
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{p.get('internal_api')} {p.get('version')}, {p.get('num_threads')} threads, "
                         f"{os.path.basename(p.get('filepath', '?'))}"
                         for p in threadpool_info() if p.get("user_api") == "blas")
    except ImportError:
        blas = "threadpoolctl not installed"
    try:
        import pykeops

        keops = pykeops.__version__
    except ImportError:
        keops = "not installed"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "cpu": model, "numpy": np.__version__, "blas": blas, "numba": numba.__version__,
            "numba threads": f"{numba.config.NUMBA_NUM_THREADS} ({numba.threading_layer()})",
            "torch": torch.__version__, "torch threads": torch.get_num_threads(), "pykeops": keops,
            "physfield": pf.__version__, "python": platform.python_version()}


def max_diff(got, ref):
    """``(max |u - u_ref|, max |log|E| - log|E|_ref|)``."""
    return tuple(float(np.max(np.abs(np.asarray(g, dtype=np.float64) - r))) for g, r in zip(got, ref))


def run_case(case, args, keops_error):
    """Times and agreement of every method at one size; physfield float64 is the yardstick."""
    field = pf.StrongField(**FIELD)
    row = {"case": case, "ms": {}, "diff": {}, "scaled": False}

    def physfield(label, P, A, B, plan=case.plan, backend="numba"):
        sec, (u, log_norm) = timed(lambda: field.direction(P, A, B, plan=plan, backend=backend),
                                   args.repeats, args.budget)
        row["ms"][label] = 1e3 * sec
        return u.astype(np.float64), log_norm

    ref = physfield("physfield f64", case.P, case.A, case.B)
    got32 = physfield("physfield f32", *(x.astype(np.float32) for x in (case.P, case.A, case.B)))
    row["diff"]["physfield f32"] = max_diff(got32, ref)
    bound = field.bind(case.A, case.B, plan=case.plan, backend="numba")  # charges prepared once
    sec, got = timed(lambda: bound.direction(case.P), args.repeats, args.budget)
    row["ms"]["bound f64"] = 1e3 * sec
    row["diff"]["bound f64"] = max_diff(got, ref)
    A32, B32, P32 = (x.astype(np.float32) for x in (case.A, case.B, case.P))
    bound32 = field.bind(A32, B32, plan=case.plan, backend="numba")
    sec, got = timed(lambda: bound32.direction(P32), args.repeats, args.budget)
    row["ms"]["bound f32"] = 1e3 * sec
    row["diff"]["bound f32"] = max_diff(got, ref)
    if case.n * case.K * case.D <= NUMPY_MAX_WORK:
        row["diff"]["numpy ref"] = max_diff(physfield("numpy ref", case.P, case.A, case.B, backend="numpy"), ref)
    if gpu_available():  # the CuPy rows: end to end from NumPy, and bound with the points on the GPU
        import cupy

        row["diff"]["cupy f64"] = max_diff(physfield("cupy f64", case.P, case.A, case.B, backend="cupy"), ref)
        gpu_bound = field.bind(case.A, case.B, plan=case.plan, backend="cupy")
        P_gpu = cupy.asarray(case.P)

        def on_gpu():
            u, log_norm = gpu_bound.direction(P_gpu)
            cupy.cuda.Device().synchronize()
            return u, log_norm

        sec, got = timed(on_gpu, args.repeats, args.budget)
        row["ms"]["cupy bound f64"] = 1e3 * sec
        row["diff"]["cupy bound f64"] = max_diff([x.get() for x in got], ref)

    plan, I, J, logw = case.subset(args.max_work)
    if len(I) < case.K:
        row["scaled"] = f"baselines on {len(I)} of {case.K} pairs, times x {case.K / len(I):.0f}"
        ref = field.direction(case.P, case.A, case.B, plan=plan, backend="numba")
    for label, (fn, dtype) in BASELINES.items():
        if label.startswith("keops") and keops_error:
            continue
        inputs = case.torch_inputs(I, J, logw, dtype)
        sec, result = timed(lambda: fn(*inputs), args.repeats, args.budget)
        row["ms"][label] = 1e3 * sec * case.K / len(I)
        row["diff"][label] = max_diff([x.numpy() for x in result], ref)
    if case.D == 2 and not keops_error and len(I) == case.K:
        inputs = case.torch_inputs(I, J, logw, torch.float32)
        row["keops"] = interleaved_ratios(lambda: keops_direction(*inputs), {
            "physfield f64": lambda: field.direction(case.P, case.A, case.B, plan=case.plan, backend="numba"),
            "physfield f32": lambda: field.direction(P32, A32, B32, plan=case.plan, backend="numba"),
            "bound f64": lambda: bound.direction(case.P), "bound f32": lambda: bound32.direction(P32)},
            max(args.repeats, 15))
    if engine.use_gemm("auto", case.D):
        row["share"] = interleaved_ratios(four_gemms(case), {
            "physfield f64": lambda: field.direction(case.P, case.A, case.B, plan=case.plan, backend="numba"),
            "bound f64": lambda: bound.direction(case.P)}, max(args.repeats, 15))
    if args.profile:
        row["profile"] = stage_profile(
            lambda: field.direction(case.P, case.A, case.B, plan=case.plan, backend="numba"), args.repeats)
    return row


def fmt_ms(ms, scaled):
    text = f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"
    return ("~" if scaled else "") + text


def report(rows, facts, mm_sec, mm_rate, args, keops_error, load):
    out = ["## Machine", ""]
    out += [f"- {k}: {v}" for k, v in facts.items()]
    out += [f"- load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f}",
            f"- command: `{args.command}`", ""]
    if keops_error:
        out += [f"PyKeOps unavailable: {keops_error}", ""]
    methods = ["loop f32", "dense f32", "dense f64", "keops f32", "physfield f64", "physfield f32", "bound f64",
               "bound f32", "numpy ref", "cupy f64", "cupy bound f64"]
    out += ["## Median time per call (ms)", "",
            "| size (n x N x D, plan) | pairs K | " + " | ".join(methods) + " |",
            "|---|---:|" + "---:|" * len(methods)]
    for r in rows:
        c = r["case"]
        cells = [fmt_ms(r["ms"][m], r["scaled"] and m in BASELINES) if m in r["ms"] else "-" for m in methods]
        out.append(f"| {c.n} x {c.N} x {c.D}, {c.plan} | {c.K} | " + " | ".join(cells) + " |")
    notes = [f"{r['case'].spec}: {r['scaled']}" for r in rows if r["scaled"]]
    if notes:
        out += ["", "~ " + "; ".join(notes) + " (every baseline is linear in K)."]

    out += ["", "## Speed-up of physfield (float64; float32 in brackets) = baseline time / physfield time", "",
            "| size | vs loop f32 | vs dense f32 | vs dense f64 | vs keops f32 | >= 30x loop | <= keops (D = 2) "
            "| vs the issue's quoted published loop |",
            "|---|---:|---:|---:|---:|:-:|:-:|---:|"]
    for r in rows:
        c, ms = r["case"], r["ms"]
        ratio = {m: (f"{ms[m] / ms['physfield f64']:.1f}x ({ms[m] / ms['physfield f32']:.1f}x)" if m in ms else "-")
                 for m in BASELINES}
        loop_ok = "met" if ms["loop f32"] / ms["physfield f64"] >= TARGET_LOOP else "MISSED"
        keops_ok = "-" if c.D != 2 or "keops f32" not in ms else (
            "met" if ms["physfield f64"] <= ms["keops f32"] else "MISSED")
        quoted = ISSUE_LOOP_MS.get(c.spec)
        quoted = "-" if quoted is None else f"{quoted / ms['physfield f64']:.0f}x ({quoted} ms)"
        out.append(f"| {c.spec} | " + " | ".join(ratio.values()) + f" | {loop_ok} | {keops_ok} | {quoted} |")

    out += ["", "## Agreement with physfield f64 on the same pairs: max |du| / max |d log|E||", "",
            "| size | " + " | ".join(m for m in methods if m != "physfield f64") + " |",
            "|---|" + "---:|" * (len(methods) - 1)]
    for r in rows:
        cells = ["{:.1e} / {:.1e}".format(*r["diff"][m]) if m in r["diff"] else "-"
                 for m in methods if m != "physfield f64"]
        out.append(f"| {r['case'].spec} | " + " | ".join(cells) + " |")

    keops_rows = [r for r in rows if "keops" in r]
    if keops_rows:
        labels = list(keops_rows[0]["keops"])
        out += ["", "## D = 2 against PyKeOps: keops f32 time / physfield time, interleaved", "",
                "Median over rounds of (PyKeOps call before and after) / (physfield call) "
                f"(`interleaved_ratios`); the issue asks for >= {TARGET_KEOPS:.0f}x.", "",
                "| size | " + " | ".join(labels) + f" | >= {TARGET_KEOPS:.0f}x |",
                "|---|" + "---:|" * len(labels) + ":-|"]
        for r in keops_rows:
            ratio = r["keops"]
            met = ", ".join(f"{label} {'met' if ratio[label] >= TARGET_KEOPS else 'MISSED'}" for label in labels)
            out.append(f"| {r['case'].spec} | " + " | ".join(f"{ratio[label]:.1f}x" for label in labels)
                       + f" | {met} |")

    out += ["", "## Matmul rate and the high-D kernel", "",
            f"NumPy float64 (256 x 3072) @ (3072 x 256): {1e3 * mm_sec:.2f} ms median, **{mm_rate:.1f} GFLOP/s**.",
            "",
            "Share = (time of the four float64 products of the GEMM form at the size's shapes, "
            "`X A^T, X B^T, R A, C B`) / (time of the call), median over interleaved rounds "
            f"(`interleaved_ratios`); the issue asks for >= {100 * TARGET_SHARE:.0f} %. `physfield f64` binds the "
            "charges in every call (validation, centring, pair distances); `bound f64` is bound once.", "",
            "| size | GEMM-form GFLOP (4 x 2nDN) | physfield f64 ms | GFLOP/s | share of 4 products | "
            f">= {100 * TARGET_SHARE:.0f} % | bound f64 ms | share | >= {100 * TARGET_SHARE:.0f} % |",
            "|---|---:|---:|---:|---:|:-:|---:|---:|:-:|"]
    for r in rows:
        c = r["case"]
        if "share" not in r:
            continue
        flops, ms, share = gemm_flops(c), r["ms"], r["share"]
        cells = []
        for label in ("physfield f64", "bound f64"):
            met = "met" if share[label] >= TARGET_SHARE else "MISSED"
            cells.append(f"{ms[label]:.1f} | " + (f"{flops / ms[label] / 1e6:.1f} | " if label == "physfield f64" else "")
                         + f"{100 * share[label]:.0f} % | {met}")
        out.append(f"| {c.spec} | {flops / 1e9:.3f} | " + " | ".join(cells) + " |")

    if args.profile:
        stages = sorted({k for r in rows for k in r["profile"]},
                        key=lambda k: -max(r["profile"].get(k, 0.0) / sum(r["profile"].values()) for r in rows))
        out += ["", "## Where physfield's time goes: exclusive ms per stage (share), float64, median", "",
                "| stage | " + " | ".join(r["case"].spec for r in rows) + " |",
                "|---|" + "---:|" * len(rows)]
        for k in stages:
            cells = []
            for r in rows:
                ms = r["profile"].get(k)
                cells.append("-" if ms is None else f"{ms:.2f} ({100 * ms / sum(r['profile'].values()):.0f} %)")
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("| total (instrumented) | " + " | ".join(f"{sum(r['profile'].values()):.1f}" for r in rows) + " |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {' '.join(QUICK)}, 3 repeats")
    parser.add_argument("--sizes", nargs="+", metavar="nxNxD[:plan]", help="sizes to run (default: all of the issue)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per method (median; default 7)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per method after 3 repeats")
    parser.add_argument("--max-work", type=int, default=2**28,
                        help="baselines run on a pair subset when n K D exceeds this (times scaled)")
    parser.add_argument("--profile", action="store_true", help="per-stage time of physfield")
    args = parser.parse_args(argv)
    args.command = "python bench/bench_direction.py " + " ".join(argv if argv is not None else sys.argv[1:])
    specs = args.sizes or (QUICK if args.quick else SIZES)
    args.repeats = args.repeats or (3 if args.quick else 7)
    try:
        cases = [Case(spec) for spec in specs]
    except (ValueError, TypeError) as exc:
        parser.error(f"bad size ({exc}); expected nxNxD or nxNxD:plan, e.g. 256x256x3072:independent")

    load0 = os.getloadavg()[0]
    if load0 > 0.5:
        print(f"warning: load average {load0:.2f}; other work on this machine will skew the timings")
    keops_error = keops_status()
    rows = [run_case(case, args, keops_error) for case in cases]
    mm_sec, mm_rate = matmul_rate()
    print(report(rows, machine_facts(), mm_sec, mm_rate, args, keops_error, (load0, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
