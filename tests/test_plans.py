"""Transport plans: shapes, marginals, optimality, validation, support, and the
``O(N M + (N + M) D)`` per-point cost of the strong field over a dense plan."""

from collections import Counter
from contextlib import nullcontext

import numpy as np
import ot
import pytest
import scipy.sparse as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

import physfield as pf
from physfield.kernels import engine, rows
from physfield.kernels import numba_cpu as cpu
from physfield.plans import independent, marginals, optimal, paired, resolve, sinkhorn, support, validate


@st.composite
def charges(draw, square=False, max_charges=6):
    """Random sources ``(N, D)`` and sinks ``(M, D)`` (``M = N`` when ``square``)."""
    N = draw(st.integers(1, max_charges))
    M = N if square else draw(st.integers(1, max_charges))
    D = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(N, D)), rng.normal(size=(M, D)) + rng.normal(size=D)


def dense(pi):
    return pi.toarray() if sp.issparse(pi) else np.asarray(pi)


def cost(pi, A, B):
    """Transport cost ``<pi, C>``, ``C_ij = |a_i - b_j|^2``."""
    return float((dense(pi) * ot.dist(A, B)).sum())


def assert_coupling(pi, N, M, tol):
    """``(N, M)``, non-negative, total mass 1, uniform marginals to ``tol`` relative."""
    pi = dense(pi)
    assert pi.shape == (N, M)
    assert np.all(pi >= 0)
    assert abs(pi.sum() - 1) <= 1e-12
    assert np.abs(pi.sum(axis=1) * N - 1).max() <= tol
    assert np.abs(pi.sum(axis=0) * M - 1).max() <= tol


@given(ab=charges(square=True))
def test_paired_independent_optimal_are_uniform_couplings(ab):
    A, B = ab
    N, M = len(A), len(B)
    for make in (paired, independent, optimal):
        assert_coupling(make(A, B), N, M, 1e-12)
    row, col = marginals("optimal", A, B)
    assert np.allclose(row, 1 / N, rtol=1e-12) and np.allclose(col, 1 / M, rtol=1e-12)


@given(ab=charges())
@example(ab=(np.array([[0.0], [1.0]]), np.array([[0.2], [0.5]])))
def test_sinkhorn_is_a_uniform_coupling(ab):
    """The entropic plan has the prescribed (uniform) marginals to 1e-6 relative.

    The explicit example is a 2 x 2 case where 10^4 log-domain iterations at the default
    ``reg`` leave the column sums off by 5e-5 relative."""
    A, B = ab
    assert_coupling(sinkhorn(A, B), len(A), len(B), 1e-6)


@given(ab=charges(), seed=st.integers(0, 2**32 - 1))
def test_optimal_beats_other_couplings(ab, seed):
    """``<pi_opt, C>`` equals POT's ``emd2`` and is at most the cost of the independent plan,
    of a random vertex of the transport polytope (``emd`` of a random cost) and, for ``N = M``,
    of a random permutation."""
    A, B = ab
    N, M = len(A), len(B)
    rng = np.random.default_rng(seed)
    best = cost(optimal(A, B), A, B)
    reference = ot.emd2(np.full(N, 1 / N), np.full(M, 1 / M), ot.dist(A, B))
    assert best == pytest.approx(reference, rel=1e-10, abs=1e-12)
    others = [independent(A, B), ot.emd(np.full(N, 1 / N), np.full(M, 1 / M), rng.random((N, M)))]
    if N == M:
        others.append(np.eye(N)[rng.permutation(N)] / N)
    for pi in others:
        assert best <= cost(pi, A, B) + 1e-12


@settings(max_examples=10)
@given(ab=charges())
def test_sinkhorn_approaches_optimal_as_reg_shrinks(ab):
    """``0 <= <pi_reg, C> - OT <= eps log min(N, M)``, ``eps = reg mean(C)`` (the entropy of a
    coupling lies between ``log max(N, M)`` and ``log N M``), so the gap vanishes with ``reg``.
    A plan whose marginals are off by ``r`` (L1) is within ``2 r`` (L1) of a coupling, so both
    sides get ``2 r max(C)`` of slack."""
    A, B = ab
    N, M = len(A), len(B)
    C = ot.dist(A, B)
    best = cost(optimal(A, B), A, B)
    for reg in (1e-1, 1e-2, 1e-3):
        pi = sinkhorn(A, B, reg=reg)
        off = np.abs(pi.sum(axis=1) - 1 / N).sum() + np.abs(pi.sum(axis=0) - 1 / M).sum()
        slack = 2 * off * C.max() + 1e-12
        gap = cost(pi, A, B) - best
        assert -slack <= gap <= reg * C.mean() * np.log(min(N, M)) + slack


@given(ab=charges())
def test_support_lists_the_nonzero_entries(ab):
    """``support`` gives ``(i, j, log pi_ij)`` of every non-zero entry: ``N M`` for
    ``independent``, ``N`` for ``paired``, at most ``N + M - 1`` for ``optimal``."""
    A, B = ab
    N, M = len(A), len(B)
    sizes = {"independent": N * M, "optimal": None}
    if N == M:
        sizes["paired"] = N
    for name, size in sizes.items():
        i, j, log_pi = support(name, A, B)
        if size is None:
            assert len(i) <= N + M - 1
        else:
            assert len(i) == size
        rebuilt = np.zeros((N, M))
        rebuilt[i, j] = np.exp(log_pi)
        assert np.allclose(rebuilt, dense(resolve(name, A, B)), rtol=1e-14, atol=0)


BAD_PLANS = [
    (np.full((3, 3), 1 / 9), "shape"),
    (np.full(6, 1 / 6), "shape"),
    (np.array([[0.75, -0.25], [0.25, 0.25]]), "negative"),
    (np.array([[np.nan, 0.5], [0.25, 0.25]]), "NaN"),
    (np.array([[np.inf, 0.5], [0.25, 0.25]]), "Inf"),
    (np.full((2, 2), 0.3), "sum"),
    (np.zeros((2, 2)), "sum"),
]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("plan, problem", BAD_PLANS)
def test_validate_rejects_bad_plans(plan, problem, sparse):
    """A bad explicit plan is a ``ValueError`` naming the problem, from ``validate`` and from
    a field evaluation that is given it (dense or ``scipy.sparse``)."""
    if sparse:
        if plan.ndim != 2:
            pytest.skip("scipy.sparse arrays are 2-D")
        plan = sp.csr_array(plan)
    with pytest.raises(ValueError, match=problem):
        validate(plan, 2, 2)
    A, B = np.zeros((2, 1)), np.ones((2, 1))
    with pytest.raises(ValueError, match=problem):
        pf.StrongField(L=2.0, sigma0=1.0, d=0.5).direction(np.array([[1.0, 0.5]]), A, B, plan=plan)


def test_named_plan_errors():
    A, B = np.zeros((2, 1)), np.ones((3, 1))
    with pytest.raises(ValueError, match="paired"):
        resolve("paired", A, B)
    with pytest.raises(ValueError, match="unknown plan"):
        resolve("greedy", A, B)
    with pytest.raises(ValueError, match="reg"):
        sinkhorn(A, B, reg=0.0)


class CountingKernels:
    """The CPU kernel interface of :mod:`physfield.engine`, run row by row through the plain
    Python bodies of :mod:`physfield.kernels.rows`, counting the scalar work of each call:
    ``D``-dimensional work (distances, weighted offsets) and pair work (the softmax)."""

    def __init__(self):
        self.work = Counter()

    def cores_to(self, kernels):
        return nullcontext()

    def sq_dist(self, X, A, out):
        self.work["D"] += X.shape[0] * A.shape[0] * X.shape[1]
        for p in range(X.shape[0]):
            rows.sq_dist_row(p, X, A, out)

    def weighted_offset(self, X, A, W, out):
        self.work["D"] += X.shape[0] * A.shape[0] * X.shape[1]
        for p in range(X.shape[0]):
            rows.weighted_offset_row(p, X, A, W, out)

    def pair_layout(self, I, J):
        return I, J

    def pair_softmax(self, t, inv2s2, X, A, B, alpha, beta, layout, near, logw, gamma, refine, R, C, lse, ess):
        I, J = layout
        n, N, M, K = len(t), alpha.shape[1], beta.shape[1], len(I)
        assert alpha.shape == R.shape == (n, N) and beta.shape == C.shape == (n, M) and gamma.shape == (K,)
        self.work["pairs"] += n * K
        for p in range(n):
            rows.pair_softmax_row(p, t, inv2s2, X, A, B, alpha, beta, I, J, logw, gamma, refine, R, C, lse, ess)


def test_independent_plan_work_is_nm_plus_n_plus_m_times_d():
    """Over the ``N M`` pairs of ``independent`` the direct path does
    ``O(N M + (N + M) D)`` work per point, never ``O(N M D)``.

    :func:`physfield.engine.path_terms` is run on counting kernels (same row bodies as the
    compiled ones, so the results must equal the Numba run). Per extra point it does exactly
    ``2 (N + M) D`` D-dimensional work (distances and offsets to every charge) and ``N M`` pair
    work with no ``D`` in it; the ``N M D`` of the pair distances ``|a_i - b_j|^2`` is paid once.
    """
    rng = np.random.default_rng(0)
    N, M, D = 5, 7, 32
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 1
    I, J, logw = support("independent", A, B)
    work = {}
    for n in (2, 5):
        X = rng.normal(size=(n, D))
        t = rng.uniform(0.1, 0.9, size=n)
        inv2s2 = rng.uniform(0.5, 2.0, size=n)
        ca, cb = rng.normal(size=(2, n))
        counting = CountingKernels()
        got = engine.path_terms(counting, np, X, t, inv2s2, ca, cb,
                                engine.prepare_paths(counting, np, A, B, I, J, logw, False))
        compiled = engine.path_terms(cpu, np, X, t, inv2s2, ca, cb, engine.prepare_paths(cpu, np, A, B, I, J, logw, False))
        for g, c in zip(got, compiled):
            np.testing.assert_allclose(g, c, rtol=1e-12, atol=1e-14)
        work[n] = counting.work
    assert work[5]["D"] - work[2]["D"] == 3 * 2 * (N + M) * D
    assert work[5]["pairs"] - work[2]["pairs"] == 3 * N * M
    assert work[2]["D"] == 2 * 2 * (N + M) * D + N * M * D


USER_PLANS = '''
import numpy as np


def reversed_pairs(sources, sinks):
    """Source i with sink N - 1 - i, each pair of weight 1 / N."""
    return np.eye(len(sources))[::-1] / len(sources)


def blurred(sources, sinks, spread=1.0):
    """A coupling that takes a parameter: uniform (the plan registry passes only what it takes)."""
    return np.full((len(sources), len(sinks)), 1.0 / (len(sources) * len(sinks)))
'''


def test_a_user_plan_runs_through_the_commands(tmp_path, monkeypatch):
    """``--plan module:function`` reaches a user's own plan exactly as a registered name: the
    targets of every batch come from its coupling (stored with ``--store-pairs``: source ``i`` with
    sink ``B - 1 - i``), the cache records it, and ``physfield check`` measures the field it gives."""
    import json

    from click.testing import CliRunner

    from cli import physfield as physfield_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "myplans.py").write_text(USER_PLANS)
    runner = CliRunner()
    done = runner.invoke(physfield_cli, ["targets", "--field", "strong", "--source", "gaussian", "--target", "moons",
                                         "--n", "40", "--batch", "16", "--plan", "myplans:reversed_pairs",
                                         "--store-pairs", "-o", "c.h5"])
    assert done.exit_code == 0, done.output
    with pf.targets.open_cache(tmp_path / "c.h5", verify=True) as cache:
        assert cache.attrs["plan"] == "myplans:reversed_pairs" and "reg" not in cache.attrs
        assert np.array_equal(cache.pairs["plan"][()], np.broadcast_to(np.eye(16)[::-1] / 16, (3, 16, 16)))
        assert np.array_equal(cache.pairs["partner"][()], 15 - np.arange(40) % 16)
    done = runner.invoke(physfield_cli, ["check", "--field", "strong", "--n", "16", "--plan", "myplans:reversed_pairs",
                                         "--only", "superposition,lines_arrived", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["config"]["plan"] == "myplans:reversed_pairs"
    plan = pf.plans.get("myplans:blurred")  # its parameters, read off the function
    assert plan.params == ("spread",) and np.allclose(plan(np.zeros((3, 2)), np.zeros((3, 2)), reg=0.3), 1 / 9)


def test_a_registered_plan_is_one_function(monkeypatch):
    """:func:`physfield.plans.register` adds a plan by name; resolve, support and a bound field
    use it like the built-in ones, and it may declare itself the diagonal."""
    monkeypatch.setattr(pf.plans, "REGISTRY", dict(pf.plans.REGISTRY))
    pf.plans.register("shifted")(lambda a, b: np.roll(np.eye(len(a)), 1, axis=1) / len(a))
    A, B = np.random.default_rng(0).normal(size=(2, 5, 2))
    i, j, logw = support("shifted", A, B)
    assert np.array_equal(j, (i + 1) % 5) and np.allclose(logw, np.log(0.2))
    field = pf.StrongField(L=6.0)
    P = np.column_stack([np.full(7, 2.0), np.random.default_rng(1).normal(size=(7, 2))])
    np.testing.assert_array_equal(field.field(P, A, B, plan="shifted", backend="numpy"),
                                  field.field(P, A, B, plan=np.roll(np.eye(5), 1, axis=1) / 5, backend="numpy"))
    assert "shifted" in pf.plans.names() and not pf.plans.get("shifted").diagonal and pf.plans.get("paired").diagonal
