"""The GPU backend without a GPU: kernels under the CUDA simulator, PTX for sm_90, and CuPy.

- ``tests/conftest.py`` sets ``NUMBA_ENABLE_CUDASIM=1``, so :mod:`physfield.kernels.numba_cuda` runs its
  ``numba.cuda`` kernels in Python threads on NumPy arrays. They must give what the Numba CPU
  kernels give (the same row bodies of :mod:`physfield.kernels.rows`), launcher by launcher and through
  :func:`physfield.engine.path_terms` / :func:`physfield.kernels.engine.coulomb_terms`. The simulator
  is slow: inputs are tiny.
- Every kernel of ``gpu.KERNELS`` compiles to PTX for sm_90 with the argument types the public
  API really passes (recorded from ``direction`` calls), in float64 and float32.
- The ``cupy`` backend agrees with the NumPy reference where a GPU is usable, and is a clear
  ``ValueError`` where it is not.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import physfield as pf
from physfield import plans
from physfield.kernels import backend as backends
from physfield.kernels import engine
from physfield.kernels import numba_cpu as cpu
from physfield.kernels import numba_cuda as gpu

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def tolerance(dtype):
    """float64: round-off; float32: the simulator's row bodies accumulate in float32 (NumPy
    scalar arithmetic) where the compiled CPU ones accumulate in float64."""
    return 1e-12 if dtype == np.float64 else 1e-5


def assert_same(got, want, dtype):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tolerance(dtype), atol=tolerance(dtype))


@st.composite
def tiny(draw):
    """``(rng, dtype, n, N, M, D)``: at most 8 points, 3 sources, 3 sinks, D <= 3."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = draw(st.integers(1, 8)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (rng, draw(st.sampled_from([np.float64, np.float32])), *sizes)


@given(tiny(), st.booleans(), st.sampled_from(["paired", "independent", "random"]))
def test_engine_gpu_kernels_match_cpu(case, gemm, plan):
    """``strong_terms`` and ``coulomb_terms`` with ``k = physfield.gpu`` (simulated), ``xp = numpy``."""
    rng, dtype, n, N, M, D = case
    if plan == "paired":
        M = N
    X, A, B = (rng.normal(size=(k, D)).astype(dtype) for k in (n, N, M))
    t = rng.uniform(0.01, 0.99, n)
    inv2s2 = rng.uniform(0.1, 10.0, n)
    if plan == "random":
        plan = rng.uniform(0.0, 1.0, (N, M))
        plan /= plan.sum()
    ca, cb = rng.normal(size=(2, n))
    I, J, logw = plans.support(plan, A, B)
    strong = [engine.path_terms(k, np, X, t, inv2s2, ca, cb, engine.prepare_paths(k, np, A, B, I, J, logw, gemm))
              for k in (gpu, cpu)]
    assert_same(*strong, dtype)

    L = 2.0
    log_qa, log_qb = np.log(rng.uniform(0.1, 1.0, N)), np.log(rng.uniform(0.1, 1.0, M))
    coulomb = [engine.coulomb_terms(k, np, X, t * L, L, A, B, log_qa, log_qb, gemm) for k in (gpu, cpu)]
    assert_same(*coulomb, dtype)


@given(tiny())
def test_each_launcher_matches_cpu(case):
    """``sq_dist``, ``pair_softmax``, ``weighted_offset``, ``charge_weights``, ``unit_rows``: gpu = cpu."""
    rng, dtype, n, N, M, D = case
    X, A, B = (rng.normal(size=(k, D)).astype(dtype) for k in (n, N, M))
    W = rng.uniform(-1, 1, (n, N)).astype(dtype)
    I, J = rng.integers(0, N, 5), rng.integers(0, M, 5)
    logw = np.log(rng.uniform(0.1, 1.0, 5))
    alpha = rng.uniform(0, 4, (n, N)).astype(dtype)
    beta = rng.uniform(0, 4, (n, M)).astype(dtype)
    gamma = rng.uniform(0, 4, 5).astype(dtype)
    t, inv2s2 = rng.uniform(0.01, 0.99, n), rng.uniform(0.1, 10.0, n)
    log_qa, log_qb = np.log(rng.uniform(0.1, 1.0, N)), np.log(rng.uniform(0.1, 1.0, M))

    def run(k):
        d2 = np.empty((n, N), dtype)
        k.sq_dist(X, A, d2)
        off = np.ones_like(X)  # weighted_offset accumulates into its output
        k.weighted_offset(X, A, W, off)
        R, C, lse, ess = np.empty((n, N), dtype), np.empty((n, M), dtype), np.empty(n), np.empty(n)
        k.pair_softmax(t, inv2s2, X, A, B, alpha, beta, k.pair_layout(I, J), None, logw, gamma, 0.5, R, C, lse, ess)
        Wa, Wb, shift, r2min, cess = (np.empty((n, N), dtype), np.empty((n, M), dtype), np.empty(n),
                                      np.empty(n), np.empty(n))
        k.charge_weights(t * 2.0, 2.0, (D + 1) / 2, alpha, beta, log_qa, log_qb, Wa, Wb, shift, r2min, cess)
        U, log_e = np.column_stack([np.zeros(n), W[:, :D] * 3]).astype(dtype), lse.copy()
        k.unit_rows(U, log_e)
        return d2, off, R, C, lse, ess, Wa, Wb, shift, r2min, cess, U, log_e

    assert_same(run(gpu), run(cpu), dtype)


PTX_SCRIPT = textwrap.dedent("""
    import json, types
    import numpy as np, numba
    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available():
        print(json.dumps({"nvvm": False}))
        raise SystemExit(0)

    # numba.cuda asks the driver for the current device's compute capability when it compiles
    # a device function called by a kernel, even for compile_ptx with an explicit cc; without a
    # GPU (no driver) that raises. Answer for it: sm_90, the target asked for below.
    import numba.cuda.dispatcher as dispatcher
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))

    from numba import cuda
    import physfield as pf
    from physfield.kernels import backend as backends
    from physfield.kernels import numba_cpu as cpu
    from physfield.kernels import numba_cuda as gpu

    # Record the argument types of every launcher call the public API makes (the work itself
    # is done by the CPU kernels), so the PTX is built for exactly those signatures. The pairs
    # as the GPU takes them (a tuple: gpu.pair_layout, gpu.pair_coords) are spread into the
    # kernel's arguments and handed to the CPU kernel as the CPU's form of the same pairs; a
    # None (pair_softmax's near pairs, which the GPU does not use, and which these small plans
    # never have) is not a kernel argument.
    seen = {}
    cpu_pairs = {"pair_softmax": cpu.pair_layout, "pair_direct": cpu.pair_coords}
    def recorder(name):
        def launch(*args):
            spread = [x for a in args if a is not None for x in (a if isinstance(a, tuple) else (a,))]
            seen.setdefault((name, dtype), set()).add(tuple(numba.typeof(a) for a in spread))
            return getattr(cpu, name)(*(cpu_pairs[name](*a) if isinstance(a, tuple) else a for a in args))
        return launch
    rec = types.SimpleNamespace(cores_to=gpu.cores_to, pair_layout=gpu.pair_layout, pair_coords=gpu.pair_coords,
                                **{name: recorder(name) for name in gpu.KERNELS})
    backends.NumbaBackend.kernels = property(lambda self: rec)

    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        A, B = rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=(3, 2)).astype(dtype)
        P = np.column_stack([rng.uniform(0.5, 1.5, 4), rng.normal(size=(4, 2))]).astype(dtype)
        for field in (pf.StrongField(L=2.0, sigma0=1.0, d=0.5), pf.CoulombField(L=2.0)):
            for method in ("direct", "gemm"):
                for plan in ("paired", "independent"):
                    field.direction(P, A, B, plan=plan, backend="numba", method=method)

    out = {"nvvm": True, "compiled": []}
    for (name, dtype), sigs in sorted(seen.items()):
        for sig in sigs:
            try:
                ptx, _ = cuda.compile_ptx(gpu.KERNELS[name].py_func, sig, cc=(9, 0))
                status = "ok" if ".target sm_90" in ptx else "PTX without '.target sm_90'"
            except Exception as exc:
                status = f"{type(exc).__name__}: {exc}".splitlines()[0]
            out["compiled"].append([name, dtype, status])
    print(json.dumps(out))
""")


def test_every_kernel_compiles_to_ptx_for_sm90():
    """In a fresh interpreter without the simulator (``compile_ptx`` needs the real numba.cuda)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["nvvm"]:
        pytest.skip("libNVVM (CUDA toolkit) not found: cannot compile PTX here")
    compiled = result["compiled"]
    failed = [c for c in compiled if c[2] != "ok"]
    assert not failed, failed
    assert {(name, dtype) for name, dtype, _ in compiled} == {
        (name, dtype) for name in gpu.KERNELS for dtype in ("float64", "float32")}


requires_gpu = pytest.mark.skipif(
    SIMULATED or not backends.gpu_available(),
    reason="needs CuPy and a CUDA GPU, and PHYSFIELD_TEST_GPU=1 (no CUDA simulator)")


@requires_gpu
@pytest.mark.parametrize("D", [2, 64, 3072])
@pytest.mark.parametrize("plan", ["paired", "independent"])
def test_cupy_matches_numpy_reference(D, plan):
    import cupy

    rng = np.random.default_rng(D)
    A, B = rng.normal(size=(16, D)), rng.normal(size=(16, D)) + 1.0
    P = np.column_stack([rng.uniform(0.05, 5.95, 64), rng.normal(size=(64, D))])
    for field in (pf.StrongField(L=6.0, sigma0=1.0, d=0.5), pf.CoulombField(L=6.0)):
        u_ref, ln_ref = field.direction(P, A, B, plan=plan, backend="numpy")
        for method in ("direct", "gemm"):
            u, ln = field.direction(P, A, B, plan=plan, backend="cupy", method=method)
            assert isinstance(u, np.ndarray)
            np.testing.assert_allclose(u, u_ref, rtol=0, atol=1e-10)
            np.testing.assert_allclose(ln, ln_ref, rtol=1e-10)
        u_dev, ln_dev = field.direction(cupy.asarray(P), cupy.asarray(A), cupy.asarray(B), plan=plan,
                                        backend="cupy")
        assert isinstance(u_dev, cupy.ndarray)
        np.testing.assert_allclose(u_dev.get(), u_ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ln_dev.get(), ln_ref, rtol=1e-10)


@pytest.mark.skipif(backends.gpu_available(), reason="a GPU is usable here")
@pytest.mark.parametrize("field", [pf.StrongField(), pf.CoulombField()])
def test_cupy_without_gpu_is_a_clear_error(field):
    P, A = np.array([[1.0, 0.0, 0.0]]), np.zeros((1, 2))
    with pytest.raises(ValueError, match="(?i)cupy.*gpu") as err:
        field.direction(P, A, A + 1.0, backend="cupy")
    assert "\n" not in str(err.value)
