"""The vectorised CPU pair kernels (:mod:`physfield.kernels.simd`) against the NumPy reference.

- ``exp_nonpositive`` (polynomial exp built from bits) is within a few ulp of libm on ``[-700, 0]``
  and within one float32 ulp on ``[-87, 0]`` for float32 arrays; exactly 0 below the floor.
- ``simd.pair_direct`` gives what :func:`physfield.kernels.reference.pair_softmax` implies (the
  offsets ``x - R A``, ``x - C B``), for any plan support, across block boundaries (the maximum may
  sit in any block, so the online rescaling between blocks is exercised), in float64 and float32.
- ``simd.pair_softmax`` gives :func:`physfield.kernels.reference.pair_softmax` for dense, sparse,
  shuffled and mixed plans (run blocks, gather blocks, skipped blocks), in float64 and float32.
- ``unit_rows``, the slope made a unit direction and ``log|E|``, gives
  :func:`physfield.kernels.reference.unit_rows`.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from physfield.kernels import numba_cpu as cpu
from physfield.kernels import reference, simd


@given(st.lists(st.floats(-745.0, 0.0), min_size=1, max_size=300))
def test_exp_nonpositive_matches_libm(xs):
    x = np.array(xs + [0.0, -1e-300, simd.EXP_FLOOR, np.nextafter(simd.EXP_FLOOR, 0.0), -0.5 * np.log(2)])
    out, scratch = np.empty_like(x), np.empty_like(x)
    simd.exp_nonpositive(x, x.dtype.type(0.0), out, scratch, len(x))
    live = x > simd.EXP_FLOOR
    np.testing.assert_allclose(out[live], np.exp(x[live]), rtol=4e-16, atol=0)
    assert (out[~live] == 0).all()


def test_exp_nonpositive_dense_grid():
    x = -np.linspace(0.0, 700.0, 200_001)[:-1]
    out, scratch = np.empty_like(x), np.empty_like(x)
    simd.exp_nonpositive(x, x.dtype.type(0.0), out, scratch, len(x))
    assert np.abs(out / np.exp(x) - 1).max() <= 4e-16


@given(st.lists(st.floats(-100.0, 0.0, width=32), min_size=1, max_size=300))
def test_exp_nonpositive_float32_matches_libm(xs):
    """float32: within one float32 ulp of float64 libm on ``(EXP_FLOOR32, 0]``, 0 at and below."""
    x = np.array(xs + [0.0, -1e-30, simd.EXP_FLOOR32, np.nextafter(simd.EXP_FLOOR32, np.float32(0)),
                       -0.5 * np.log(2)], np.float32)
    out, scratch = np.empty_like(x), np.empty_like(x)
    simd.exp_nonpositive(x, x.dtype.type(0.0), out, scratch, len(x))
    live = x > simd.EXP_FLOOR32
    np.testing.assert_allclose(out[live], np.exp(x[live].astype(np.float64)), rtol=2**-23, atol=0)
    assert (out[~live] == 0).all()


def test_exp_nonpositive_float32_dense_grid():
    x = (-np.linspace(0.0, 87.0, 200_001)[:-1]).astype(np.float32)
    out, scratch = np.empty_like(x), np.empty_like(x)
    simd.exp_nonpositive(x, x.dtype.type(0.0), out, scratch, len(x))
    assert np.abs(out / np.exp(x.astype(np.float64)) - 1).max() <= 2**-23


def reference_offsets(t, inv2s2, X, A, B, I, J, logw, ca, cb):
    """``(out, lse, ess)`` of :func:`physfield.kernels.rows.pair_direct_row` from the reference:
    ``out = ca (x - R A) + cb (x - C B)``."""
    R, C, lse, ess = reference.pair_softmax(X, t, inv2s2, A, B, I, J, logw)
    return ca[:, None] * (X - R @ A) + cb[:, None] * (X - C @ B), lse, ess


@given(st.integers(0, 2**32 - 1), st.integers(1, 3 * simd.BLOCK + 5), st.integers(1, 4),
       st.sampled_from([np.float64, np.float32]), st.booleans(), st.integers(1, 2 * simd.CHUNK + 3))
def test_pair_direct_matches_the_reference(seed, K, D, dtype, paired, n):
    """Every point's sums, ``n`` points over more than one chunk of :data:`simd.CHUNK`."""
    rng = np.random.default_rng(seed)
    N = K if paired else int(rng.integers(1, 40))
    M = K if paired else int(rng.integers(1, 40))
    A = rng.normal(size=(N, D)).astype(dtype)
    B = (rng.normal(size=(M, D)) * 2 + 1).astype(dtype)
    X = (rng.normal(size=(n, D)) * 2).astype(dtype)
    I, J = (np.arange(K), np.arange(K)) if paired else (rng.integers(0, N, K), rng.integers(0, M, K))
    logw = np.log(rng.dirichlet(np.ones(K)))
    # the heaviest pair in a random block: a point sits on its string
    k = int(rng.integers(K))
    t = rng.uniform(0.01, 0.99, n)
    X[0] = (1 - t[0]) * A[I[k]] + t[0] * B[J[k]]
    inv2s2 = 1 / (2 * rng.uniform(0.05, 1.5, n) ** 2)
    ca, cb = rng.normal(size=(2, n))  # each offset's own coefficient: a wrong one shows
    want = reference_offsets(t, inv2s2, X.astype(np.float64), A.astype(np.float64), B.astype(np.float64), I, J, logw,
                             ca, cb)
    got = [np.empty((n, D), dtype), np.empty(n), np.empty(n)]
    cpu.pair_direct(t, inv2s2, X, cpu.pair_coords(A, B, I, J), logw, ca, cb, *got)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for g, w in zip(got, want):
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def plan_layout(rng, N, M, kind):
    """Pairs ``(I, J)`` of a plan: ``dense`` (row-major: every row one run), ``sparse`` (random
    entries, row-major), ``shuffled`` (a dense plan in random order: no runs), ``mixed`` (long
    rows, some longer than a block, beside short and empty ones)."""
    if kind == "dense":
        return np.repeat(np.arange(N), M), np.tile(np.arange(M), N)
    if kind == "sparse":
        I, J = np.nonzero(rng.random((N, M)) < 0.3)
    elif kind == "shuffled":
        order = rng.permutation(N * M)
        return np.repeat(np.arange(N), M)[order], np.tile(np.arange(M), N)[order]
    else:
        mask = np.zeros((N, M), bool)
        for i in range(N):
            lo = int(rng.integers(M))
            mask[i, lo:lo + int(rng.choice([0, 1, 3, simd.RUN_MIN, M]))] = True
        I, J = np.nonzero(mask)
    if len(I) == 0:
        return np.array([0]), np.array([0])
    return I, J


KINDS = ["dense", "sparse", "shuffled", "mixed"]
WIDTHS = [1, 5, 40, simd.RUN_MIN + 3, simd.BLOCK + 9]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("M", WIDTHS)
@settings(max_examples=8)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.sampled_from([1, 3, 40]),
       st.sampled_from([np.float64, np.float32]), st.floats(0.01, 30.0))
def test_pair_softmax_matches_the_reference(kind, M, seed, N, D, dtype, spread):
    """Any plan: the block kernel equals the reference softmax, with points on a string (the
    identity cancels: refined from the coordinates) and charges ``spread`` apart (large spreads
    leave most blocks below the exp floor: skipped)."""
    rng = np.random.default_rng(seed)
    n = 4
    I, J = plan_layout(rng, N, M, kind)
    K = len(I)
    A = (rng.normal(size=(N, D)) * spread).astype(dtype)
    B = (rng.normal(size=(M, D)) * spread + 1).astype(dtype)
    X = (rng.normal(size=(n, D)) * spread).astype(dtype)
    t = rng.uniform(0.01, 0.99, n)
    k = int(rng.integers(K))
    X[0] = (1 - t[0]) * A[I[k]] + t[0] * B[J[k]]
    inv2s2 = 1 / (2 * rng.uniform(0.05, 1.5, n) ** 2)
    if dtype == np.float64:  # a very narrow string (z near a plate) a hair from the point: the
        X[1] = X[0] + 1e-2 * rng.normal(size=D)  # identity's round-off would move its weight
        t[1], inv2s2[1] = t[0], 1e4
    logw = np.log(rng.dirichlet(np.ones(K)))
    alpha = ((X[:, None, :] - A[None]) ** 2).sum(-1).astype(dtype)
    beta = ((X[:, None, :] - B[None]) ** 2).sum(-1).astype(dtype)
    gamma = ((A[I] - B[J]) ** 2).sum(-1).astype(dtype)
    refine = 1e-4 if dtype == np.float64 else 1e-2
    want = reference.pair_softmax(X.astype(np.float64), t, inv2s2, A.astype(np.float64), B.astype(np.float64), I, J,
                                  logw)
    got = np.empty((n, N), dtype), np.empty((n, M), dtype), np.empty(n), np.empty(n)
    cpu.pair_softmax(t, inv2s2, X, A, B, alpha, beta, cpu.pair_layout(I, J), None, logw, gamma, refine, *got)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max())))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("M", WIDTHS)
@settings(max_examples=8)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_pair_blocks_cover_the_pairs(kind, M, seed, N):
    """Blocks partition the pairs in order, none longer than ``BLOCK``; a run block is at least
    ``RUN_MIN`` pairs of one row with consecutive columns, and a dense plan is all runs."""
    I, J = plan_layout(np.random.default_rng(seed), N, M, kind)
    starts, run = simd.pair_blocks(I, J)
    assert starts[0] == 0 and starts[-1] == len(I) and len(run) == len(starts) - 1
    sizes = np.diff(starts)
    assert (sizes >= 1).all() and (sizes <= simd.BLOCK).all()
    for lo, hi, r in zip(starts[:-1], starts[1:], run):
        is_run = (I[lo:hi] == I[lo]).all() and (np.diff(J[lo:hi]) == 1).all()
        assert not r or (is_run and hi - lo >= simd.RUN_MIN)
    if kind == "dense" and M >= simd.RUN_MIN:
        assert run.all()


def test_pair_softmax_refines_near_string_distances():
    """A point 1e-4 from a string whose width is 1e-4 (``z`` near a plate): the identity for
    ``|rho|^2`` loses ~1e-14 absolutely, ~1e-6 of the log-weight here; the kernel recomputes
    such distances from the coordinates, as the row body does."""
    rng = np.random.default_rng(3)
    N, M, D = 6, 5, 64
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 0.5
    t = np.array([0.3, 0.3])
    X = np.stack([(1 - t[0]) * A[2] + t[0] * B[4] + 1e-4 * rng.normal(size=D), rng.normal(size=D)])
    inv2s2 = np.array([1e8, 0.5])
    I, J = np.repeat(np.arange(N), M), np.tile(np.arange(M), N)
    logw = np.log(rng.dirichlet(np.ones(N * M)))
    alpha = ((X[:, None, :] - A[None]) ** 2).sum(-1)
    beta = ((X[:, None, :] - B[None]) ** 2).sum(-1)
    gamma = ((A[I] - B[J]) ** 2).sum(-1)
    got = np.empty((2, N)), np.empty((2, M)), np.empty(2), np.empty(2)
    cpu.pair_softmax(t, inv2s2, X, A, B, alpha, beta, cpu.pair_layout(I, J), None, logw, gamma, 1e-4, *got)
    r2 = ((X[0] - (1 - t[0]) * A[2] - t[0] * B[4]) ** 2).sum()
    assert got[2][0] == pytest.approx(logw[2 * M + 4] - inv2s2[0] * r2, abs=1e-8)
    assert got[0][0, 2] == pytest.approx(1.0) and got[1][0, 4] == pytest.approx(1.0)


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 9), st.sampled_from([np.float64, np.float32]),
       st.floats(-12, 20))
@example(seed=0, n=3, D=2, dtype=np.float32, log_scale=20.0)
def test_unit_rows_match_the_reference(seed, n, D, dtype, log_scale):
    """Unit rows ``(1, g) / sqrt(1 + |g|^2)`` and ``log E_z + log(1 + |g|^2) / 2``, for slopes
    ``g`` from ``1e-12`` to ``1e20`` (whose square overflows float32: ``|g|^2`` is summed in
    float64): the same as the reference, and what the formula says of the input (unit length,
    the slope's direction, the log-norm in float64)."""
    rng = np.random.default_rng(seed)
    U = np.column_stack([rng.normal(size=n), rng.normal(size=(n, D)) * 10.0**log_scale]).astype(dtype)
    log_e = rng.normal(size=n) * 100
    g = U[:, 1:].astype(np.float64)
    want_log = log_e + 0.5 * np.log1p((g**2).sum(axis=1))
    ref_u, ref_log = U.copy(), log_e.copy()
    reference.unit_rows(ref_u, ref_log)
    cpu.unit_rows(U, log_e)
    tol = 1e-15 if dtype == np.float64 else 1e-7
    np.testing.assert_allclose(U, ref_u, rtol=4 * tol, atol=tol)
    np.testing.assert_allclose(log_e, ref_log, rtol=tol, atol=tol)
    np.testing.assert_allclose(log_e, want_log, rtol=tol, atol=tol)
    np.testing.assert_allclose((U.astype(np.float64) ** 2).sum(axis=1), 1.0, rtol=10 * tol)
    np.testing.assert_allclose(U[:, 1:] / U[:, :1], g, rtol=10 * tol)
