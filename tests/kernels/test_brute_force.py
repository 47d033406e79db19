"""Brute-force float64 checks of both fields against the formulas of the README, pair by pair.

Every reference value here is a plain Python loop over the plan's non-zero pairs (strong field)
or over the charges (Coulomb field), each term formed exactly as the formula is written: the
Gaussian density with its normalisation, the Green's field with the sphere area. Nothing is
taken from :mod:`physfield` but the public calls under test (``pf.StrongField``,
``pf.CoulombField``, ``direction``, ``field``); the plans are built here too (``optimal`` by a
linear program solved with SciPy, not POT), so a wrong plan weight, a wrong marginal or a wrong
effective sample size in any backend shows up as a mismatch.

Plans are random and NON-uniform (dense and ``scipy.sparse``, with random zeros, ``N != M``
allowed) and the named ``paired`` / ``optimal`` plans. Points lie strictly between the plates,
drawn near the strings of the plan (``x = c_ij(z) + sigma(z) xi``) so the field is not small.
"""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

import physfield as pf

RTOL = 1e-9  # float64: the backends differ from the brute force by round-off only


# ---------------------------------------------------------------------------------------------
# plans, written out here


def random_plan(rng, n, m, zero_fraction):
    """A random non-uniform ``(n, m)`` plan with about ``zero_fraction`` zeros (at least one
    non-zero entry), summing to 1. Weights spread over two orders of magnitude."""
    pi = np.exp(rng.uniform(-3.0, 2.0, size=(n, m)))
    pi *= rng.random((n, m)) >= zero_fraction
    if not pi.any():
        pi.flat[rng.integers(pi.size)] = 1.0
    return pi / pi.sum()


def paired_plan(n):
    return np.eye(n) / n


def optimal_plan(A, B):
    """The exact OT plan for ``|a - b|^2`` with uniform marginals, as a linear program (SciPy's
    HiGHS dual simplex: a vertex, unique for generic data)."""
    n, m = len(A), len(B)
    cost = ((A[:, None, :] - B[None, :, :]) ** 2).sum(axis=-1)
    rows = np.zeros((n, n * m))
    cols = np.zeros((m, n * m))
    for i in range(n):
        for j in range(m):
            rows[i, i * m + j] = 1.0
            cols[j, i * m + j] = 1.0
    res = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]),
                  b_eq=np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)]),
                  bounds=(0, None), method="highs-ds")
    assert res.status == 0, res.message
    pi = res.x.reshape(n, m)
    pi[pi < 1e-12] = 0.0
    return pi / pi.sum()


def as_given(pi, kind, rng=None):
    """What is passed to the field for a plan of this kind (``sparse``: CSR, or COO when ``rng``
    says so)."""
    if kind == "sparse":
        return sp.coo_array(pi) if rng is not None and rng.random() < 0.5 else sp.csr_array(pi)
    if kind in ("paired", "optimal"):
        return kind
    return pi.copy()


# ---------------------------------------------------------------------------------------------
# the strong field, formula by formula


def sigma_and_s(z, L, sigma0, d):
    """``sigma(z)`` and ``s(z) = sigma'(z) / sigma(z)`` for ``0 < z < L``, k = pi / (2 d)."""
    k = math.pi / (2 * d)
    if z < d:
        sigma = sigma0 * math.sin(k * z)
        dsigma = sigma0 * k * math.cos(k * z)
    elif z <= L - d:
        sigma = sigma0
        dsigma = 0.0
    else:
        sigma = sigma0 * math.sin(k * (L - z))
        dsigma = -sigma0 * k * math.cos(k * (L - z))
    return sigma, dsigma / sigma


def gaussian_density(x, c, sigma):
    """``N(x; c, sigma^2 I_D)`` with its normalisation."""
    D = len(x)
    r2 = float(((x - c) ** 2).sum())
    return (2 * math.pi * sigma**2) ** (-D / 2) * math.exp(-r2 / (2 * sigma**2))


def strong_brute_force(P, A, B, pi, L, sigma0, d):
    """``E = sum_ij pi_ij E_{a_i b_j}`` at each point and ``ess = 1 / sum_k w_k^2``,
    ``w_k = pi_k phi_k / sum pi phi``, by a loop over the plan's non-zero pairs."""
    D = A.shape[1]
    E = np.zeros((len(P), D + 1))
    ess = np.zeros(len(P))
    pairs = [(i, j) for i in range(pi.shape[0]) for j in range(pi.shape[1]) if pi[i, j] != 0]
    for p, point in enumerate(P):
        z, x = float(point[0]), point[1:]
        if not 0 < z < L:
            continue
        sigma, s = sigma_and_s(z, L, sigma0, d)
        weights = []
        for i, j in pairs:
            a, b = A[i], B[j]
            c = a + (z / L) * (b - a)
            phi = gaussian_density(x, c, sigma)
            E_ab = phi * np.concatenate([[1.0], (b - a) / L + s * (x - c)])
            E[p] += pi[i, j] * E_ab
            weights.append(pi[i, j] * phi)
        w = np.array(weights) / sum(weights)
        ess[p] = 1.0 / (w**2).sum()
    return E, ess


PLAN_KINDS = ("dense", "sparse", "paired", "optimal")


def charges_and_plan(rng, kind, N, M, D, zero_fraction):
    """Sources ``(N, D)``, sinks ``(M, D)`` (shifted as a whole) and a plan of ``kind``: ``paired``,
    ``optimal`` or a random non-uniform one (dense or sparse kinds)."""
    A = rng.normal(size=(N, D))
    B = rng.normal(size=(M, D)) + rng.normal(size=D)
    if kind == "paired":
        return A, B, paired_plan(N)
    if kind == "optimal":
        return A, B, optimal_plan(A, B)
    return A, B, random_plan(rng, N, M, zero_fraction)


@st.composite
def strong_cases(draw, kind):
    """A field, charges, a plan of ``kind`` (as given to the field, and ``pi`` dense for the
    brute force) and points strictly inside the plates near the plan's strings."""
    D = draw(st.integers(1, 3))
    N = draw(st.integers(1, 6))
    M = N if kind == "paired" else draw(st.integers(1, 6))
    L = draw(st.floats(2.0, 8.0))
    sigma0 = draw(st.floats(0.3, 1.5))
    d = L * draw(st.sampled_from([0.05, 0.2, 0.5]))
    zero_fraction = draw(st.sampled_from([0.0, 0.3, 0.6]))
    n = draw(st.integers(1, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A, B, pi = charges_and_plan(rng, kind, N, M, D, zero_fraction)
    # points: z in the end regions and the middle, x near the string of a pair drawn from pi
    z = L * np.concatenate([rng.uniform(0.002, 0.998, size=n - n // 3),
                            rng.uniform(0.002, 0.05, size=n // 6),
                            rng.uniform(0.95, 0.998, size=n // 3 - n // 6)])
    k = rng.choice(pi.size, size=n, p=pi.ravel())
    i, j = np.unravel_index(k, pi.shape)
    X = np.empty((n, D))
    for p in range(n):
        c = A[i[p]] + (z[p] / L) * (B[j[p]] - A[i[p]])
        X[p] = c + sigma_and_s(z[p], L, sigma0, d)[0] * rng.uniform(0.2, 2.0) * rng.normal(size=D)
    field = pf.StrongField(L=L, sigma0=sigma0, d=d)
    return field, A, B, pi, as_given(pi, kind, rng), np.column_stack([z, X])


def assert_fields_close(E, ref, scale, what):
    """``|E - ref| <= RTOL * scale`` row by row."""
    err = np.sqrt(((E - ref) ** 2).sum(axis=1))
    bad = np.flatnonzero(~(err <= RTOL * scale))
    assert not len(bad), (f"{what}: {len(bad)} of {len(E)} points off, worst relative error "
                          f"{np.max(err[bad] / scale[bad]):.3g} at point {bad[0]}: {E[bad[0]]} vs {ref[bad[0]]}")


@pytest.mark.parametrize("kind", PLAN_KINDS)
@given(data=st.data())
def test_strong_field_equals_pairwise_brute_force(backend, kind, data):
    case = data.draw(strong_cases(kind))
    field, A, B, pi, plan, P = case
    ref, _ = strong_brute_force(P, A, B, pi, field.L, field.sigma0, field.d)
    scale = np.sqrt((ref**2).sum(axis=1))
    assert np.all(scale > 0) and np.all(np.isfinite(scale))
    E = field.field(P, A, B, plan=plan, backend=backend)
    assert_fields_close(E, ref, scale, f"field ({backend})")
    u, log_norm = field.direction(P, A, B, plan=plan, backend=backend)
    assert_fields_close(np.exp(log_norm)[:, None] * u, ref, scale, f"exp(log_norm) * u ({backend})")


@pytest.mark.parametrize("kind", PLAN_KINDS)
@given(data=st.data())
def test_strong_ess_equals_pairwise_brute_force(backend, kind, data):
    case = data.draw(strong_cases(kind))
    field, A, B, pi, plan, P = case
    _, ref = strong_brute_force(P, A, B, pi, field.L, field.sigma0, field.d)
    _, _, ess = field.direction(P, A, B, plan=plan, backend=backend, return_ess=True)
    np.testing.assert_allclose(ess, ref, rtol=RTOL, atol=0)


# Each way the fast backend treats a plan gets a fixed case with a clearly non-uniform plan and
# an effective number of pairs well above 1: few pairs (K <= N + M), many pairs off the full
# grid, the full N x M grid.
PAIR_LAYOUTS = {
    "few_pairs": lambda rng: random_plan(rng, 5, 4, 0.75),
    "many_pairs": lambda rng: random_plan(rng, 5, 6, 0.3),
    "full_grid": lambda rng: random_plan(rng, 5, 6, 0.0),
}


@pytest.mark.parametrize("layout", sorted(PAIR_LAYOUTS))
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_strong_ess_and_field_for_each_plan_layout(backend, layout, kind):
    rng = np.random.default_rng(list(PAIR_LAYOUTS).index(layout))
    pi = PAIR_LAYOUTS[layout](rng)
    N, M = pi.shape
    few = np.count_nonzero(pi) <= N + M
    assert few == (layout == "few_pairs") and (np.count_nonzero(pi) == N * M) == (layout == "full_grid")
    D, L, sigma0, d = 2, 4.0, 1.0, 1.0
    A = 0.3 * rng.normal(size=(N, D))  # charges close together: strings overlap, ess well above 1
    B = 0.3 * rng.normal(size=(M, D))
    z = np.linspace(0.05, 0.95, 19) * L
    P = np.column_stack([z, 0.2 * rng.normal(size=(len(z), D))])
    field = pf.StrongField(L=L, sigma0=sigma0, d=d)
    E_ref, ess_ref = strong_brute_force(P, A, B, pi, L, sigma0, d)
    assert ess_ref.min() > 1.5
    _, _, ess = field.direction(P, A, B, plan=as_given(pi, kind), backend=backend, return_ess=True)
    np.testing.assert_allclose(ess, ess_ref, rtol=RTOL, atol=0)
    E = field.field(P, A, B, plan=as_given(pi, kind), backend=backend)
    assert_fields_close(E, E_ref, np.sqrt((E_ref**2).sum(axis=1)), f"field ({backend}, {layout})")


@pytest.mark.parametrize("plan", ["paired", "optimal", "dense", "sparse"])
def test_strong_field_is_exactly_zero_outside_the_plates(backend, plan):
    rng = np.random.default_rng(7)
    N, D, L = 4, 2, 5.0
    A, B = rng.normal(size=(N, D)), rng.normal(size=(N, D))
    given_plan = as_given(random_plan(rng, N, N, 0.3), plan)
    z_out = np.array([0.0, -0.0, -1e-300, -1e-12, -0.5, -7.0, L, L + 1e-12, L + 0.3, 40.0,
                      np.nextafter(L, np.inf), -np.finfo(float).tiny])
    z_in = np.array([1e-3, 0.5 * L, np.nextafter(L, 0) - 1e-3])
    z = np.concatenate([z_out, z_in])
    P = np.column_stack([z, rng.normal(size=(len(z), D))])
    P[len(z_out):, 1:] = 0.5 * (A[0] + B[0])  # inside points near a string: field not zero there
    field = pf.StrongField(L=L, sigma0=1.0, d=1.0)
    u, log_norm, ess = field.direction(P, A, B, plan=given_plan, backend=backend, return_ess=True)
    out = slice(0, len(z_out))
    assert np.all(u[out] == 0)
    assert np.all(log_norm[out] == -np.inf)
    assert np.all(ess[out] == 0)
    assert np.all(field.field(P, A, B, plan=given_plan, backend=backend)[out] == 0)
    # each outside point alone too (the all-outside call)
    for p in P[out]:
        u1, ln1 = field.direction(p[None], A, B, plan=given_plan, backend=backend)
        assert np.all(u1 == 0) and ln1[0] == -np.inf
    # and the inside points of the same call are untouched by the outside ones
    inside = slice(len(z_out), None)
    assert np.all(np.isfinite(log_norm[inside])) and np.all(u[inside, 0] > 0)


# ---------------------------------------------------------------------------------------------
# the Coulomb field, charge by charge


def sphere_area(D):
    """``|S^D| = 2 pi^((D+1)/2) / Gamma((D+1)/2)``, the unit sphere in ``R^{D+1}``."""
    return 2 * math.pi ** ((D + 1) / 2) / math.gamma((D + 1) / 2)


def green(r):
    """``G(r) = r / (|S^D| |r|^(D+1))`` in ``R^{D+1}``."""
    D = len(r) - 1
    return r / (sphere_area(D) * math.sqrt(float((r**2).sum())) ** (D + 1))


def coulomb_brute_force(P, A, B, pi, L):
    """``E(p) = sum_i alpha_i G(p - (0, a_i)) - sum_j beta_j G(p - (L, b_j))`` and
    ``ess = (sum_c m_c)^2 / sum_c m_c^2``, ``m_c = |q_c| / (|S^D| r_c^D)``, by a loop over the
    charges; also ``sum_c m_c`` (the scale of round-off in ``E``)."""
    D = A.shape[1]
    alpha = pi.sum(axis=1)
    beta = pi.sum(axis=0)
    charges = [(np.concatenate([[0.0], A[i]]), alpha[i]) for i in range(len(A))]
    charges += [(np.concatenate([[L], B[j]]), -beta[j]) for j in range(len(B))]
    E = np.zeros((len(P), D + 1))
    ess = np.zeros(len(P))
    total = np.zeros(len(P))
    for p, point in enumerate(P):
        m = []
        for position, q in charges:
            r = point - position
            E[p] += q * green(r)
            m.append(abs(q) / (sphere_area(D) * math.sqrt(float((r**2).sum())) ** D))
        m = np.array(m)
        ess[p] = m.sum() ** 2 / (m**2).sum()
        total[p] = m.sum()
    return E, ess, total


@st.composite
def coulomb_cases(draw, kind):
    D = draw(st.integers(1, 3))
    N = draw(st.integers(1, 6))
    M = N if kind == "paired" else draw(st.integers(1, 6))
    L = draw(st.floats(0.5, 8.0))
    n = draw(st.integers(1, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A, B, pi = charges_and_plan(rng, kind, N, M, D, draw(st.sampled_from([0.0, 0.3, 0.6])))
    # points between, behind and beyond the plates, some close to a charge
    z = rng.uniform(-0.5 * L, 1.5 * L, size=n)
    X = rng.normal(size=(n, D)) * 1.5
    near = rng.random(n) < 0.3
    for p in np.flatnonzero(near):
        if rng.random() < 0.5:
            z[p], X[p] = rng.normal() * 0.05, A[rng.integers(N)] + 0.05 * rng.normal(size=D)
        else:
            z[p], X[p] = L + rng.normal() * 0.05, B[rng.integers(M)] + 0.05 * rng.normal(size=D)
    return pf.CoulombField(L=L), A, B, pi, as_given(pi, kind, rng), np.column_stack([z, X])


@pytest.mark.parametrize("kind", PLAN_KINDS)
@given(data=st.data())
def test_coulomb_field_equals_chargewise_brute_force(backend, kind, data):
    case = data.draw(coulomb_cases(kind))
    field, A, B, pi, plan, P = case
    ref, _, total = coulomb_brute_force(P, A, B, pi, field.L)
    E = field.field(P, A, B, plan=plan, backend=backend)
    assert_fields_close(E, ref, total, f"coulomb field ({backend})")
    u, log_norm = field.direction(P, A, B, plan=plan, backend=backend)
    with np.errstate(under="ignore"):
        assert_fields_close(np.exp(log_norm)[:, None] * u, ref, total, f"coulomb exp(log_norm) * u ({backend})")


@pytest.mark.parametrize("kind", PLAN_KINDS)
@given(data=st.data())
def test_coulomb_ess_equals_chargewise_brute_force(backend, kind, data):
    case = data.draw(coulomb_cases(kind))
    field, A, B, pi, plan, P = case
    _, ref, _ = coulomb_brute_force(P, A, B, pi, field.L)
    _, _, ess = field.direction(P, A, B, plan=plan, backend=backend, return_ess=True)
    np.testing.assert_allclose(ess, ref, rtol=RTOL, atol=0)
