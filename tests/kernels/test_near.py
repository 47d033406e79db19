"""Pruned dense plans (:mod:`physfield.kernels.near`): a point visits only the pairs it can see.

- The blocks a point visits (``simd._near_blocks``) hold every pair whose weight the kernels keep
  (logit within ``-EXP_FLOOR`` of the largest, from the reference's logits), and near a plate far
  fewer than all pairs.
- The pruned CPU sums equal :func:`physfield.kernels.reference.pair_softmax` on random dense plans,
  including plans whose mass sits on the far pairs (the bound must use each row's largest weight),
  with points near both plates and between them, in float64 and float32.
- Renumbering the sinks leaves the field unchanged (the bound field against the reference backend).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import physfield as pf
from physfield.kernels import engine, near, reference, simd
from physfield.kernels import numba_cpu as cpu


def dense_case(rng, N, M, D, far):
    """Charges, a dense plan (uniform, random, or with its mass on far pairs) and points near
    both plates and between them."""
    A = rng.normal(size=(N, D))
    B = rng.normal(size=(M, D)) * 2 + 1
    d2 = ((A[:, None] - B[None]) ** 2).sum(-1)
    # "far": log pi grows with the distance of the pair, over hundreds (no pi_ij underflows:
    # the plan is given by its logarithm)
    logits = {"uniform": np.zeros((N, M)), "random": rng.normal(size=(N, M)) * 3, "far": 40 * d2}[far]
    I, J = np.nonzero(np.ones((N, M), bool))
    logw = (logits - logsumexp(logits))[I, J]
    n = 12
    t = np.concatenate([10.0 ** rng.uniform(-6, -3, 4), 1 - 10.0 ** rng.uniform(-6, -3, 4), rng.uniform(0, 1, 4)])
    X = (1 - t[:, None]) * A[rng.integers(N, size=n)] + t[:, None] * B[rng.integers(M, size=n)]
    X += rng.normal(size=X.shape) * np.sin(np.pi * t)[:, None]
    inv2s2 = 1 / (2 * (0.7 * np.sin(np.pi * t)) ** 2)
    return A, B, I, J, logw, X, t, inv2s2


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(near.ROW_MIN, 90), st.integers(1, 4),
       st.sampled_from(["uniform", "random", "far"]))
def test_near_blocks_hold_every_pair_above_the_floor(seed, N, M, D, far):
    rng = np.random.default_rng(seed)
    A, B, I, J, logw, X, t, inv2s2 = dense_case(rng, N, M, D, far)
    order, I, J, logw = near.relabel(B, I, J, logw)
    B = B[order]
    where = near.layout(A, B, I, J, logw)
    alpha = ((X[:, None] - A[None]) ** 2).sum(-1)
    beta = ((X[:, None] - B[None]) ** 2).sum(-1)
    gamma = ((A[I] - B[J]) ** 2).sum(-1)
    logits, _ = reference._pair_logits(X, t, inv2s2, A[I], B[J], logw)
    K, most = len(I), len(I) // simd.BLOCK + N + 1
    fewer = 0
    for p in range(len(X)):
        los, his, runs = np.empty(most, np.int64), np.empty(most, np.int64), np.empty(most, np.bool_)
        nb = simd._near_blocks(p, t[p], inv2s2[p], X, alpha, beta, J, logw, gamma, where.rows, where.coord,
                               where.a_proj, where.b_proj, where.lw_max, K, los, his, runs)
        visited = np.zeros(K, bool)
        for lo, hi, run in zip(los[:nb], his[:nb], runs[:nb]):
            assert hi - lo <= simd.BLOCK and (I[lo:hi] == I[lo]).all()
            assert run == (np.diff(J[lo:hi]) == 1).all()
            visited[lo:hi] = True
        kept = logits[p] - logits[p].max() > simd.EXP_FLOOR + 1e-6
        assert visited[kept].all(), f"point {p} (t={t[p]:.2g}) misses pairs above the floor"
        fewer += visited.sum() < K
    assert fewer >= 6  # most of the 8 points near a plate see fewer than all pairs


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 30), st.integers(near.ROW_MIN, 70), st.integers(1, 3),
       st.sampled_from(["uniform", "random", "far"]), st.sampled_from([np.float64, np.float32]),
       st.booleans())
def test_pruned_dense_plan_sums_equal_the_reference(seed, N, M, D, far, dtype, gemm):
    """float64 against the reference; both dtypes against the same kernel visiting every pair
    (float32 itself is far from the reference this close to a plate, pruned or not)."""
    rng = np.random.default_rng(seed)
    A, B, I, J, logw, X, t, inv2s2 = dense_case(rng, N, M, D, far)
    paths = engine.prepare_paths(cpu, np, A.astype(dtype), B.astype(dtype), I, J, logw, gemm)
    assert paths.near is not None
    ca, cb = rng.normal(size=(2, len(X)))
    got = engine.path_terms(cpu, np, X.astype(dtype), t, inv2s2, ca, cb, paths)
    every = engine.path_terms(cpu, np, X.astype(dtype), t, inv2s2, ca, cb, paths._replace(near=None))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for g, w in zip(got, every):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max())))
    if dtype == np.float64:
        R, C, lse, ess = reference.pair_softmax(X, t, inv2s2, A, B, I, J, logw)
        offsets = ca[:, None] * (X - R @ A) + cb[:, None] * (X - C @ B)
        for g, w in zip(got, (lse, ess, offsets)):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(w).max())))


@pytest.mark.parametrize("plan", ["independent", "sinkhorn"])
def test_a_bound_field_with_renumbered_sinks_is_the_reference_field(plan):
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(40, 2)), rng.normal(size=(48, 2)) * 2
    z = np.concatenate([[1e-4, 0.01, 3.0, 5.99, 6 - 1e-5], rng.uniform(0, 6, 20)])
    P = np.column_stack([z, rng.normal(size=(len(z), 2))])
    field = pf.StrongField(L=6.0)
    fast, ref = (field.bind(A, B, plan=plan, backend=b) for b in ("numba", "numpy"))
    assert fast.charges(np.float64)[2].near is not None
    for g, w in zip(fast.direction(P), ref.direction(P)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
