"""The Coulomb field of the EFM capacitor, checked against physics, not against itself.

    E(p) = sum_i alpha_i G(p - (0, a_i)) - sum_j beta_j G(p - (L, b_j)),   G(r) = r / (|S^D| |r|^(D+1))

Properties: Gauss's law (flux out of a sphere = enclosed charge; quadrature in D = 1, 2, Monte
Carlo in D = 3, 4), zero divergence and curl away from the charges, where reversal and leakage
happen (and how much flux they carry), backend agreement, large-D stability, charges as errors.

Configurations are drawn by hypothesis (sizes, dimension, L, seed); the arrays come from a
NumPy generator seeded by the drawn seed.
"""

import functools
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import physfield as pf
from tests.helpers import BACKENDS

LOG_2PI = math.log(2 * math.pi)


def sphere_area(D):
    """``|S^D| = 2 pi^((D+1)/2) / Gamma((D+1)/2)``, written independently of the package."""
    return 2 * math.pi ** ((D + 1) / 2) / math.gamma((D + 1) / 2)


def log_sphere_area(D):
    return math.log(2) + (D + 1) / 2 * math.log(math.pi) - math.lgamma((D + 1) / 2)


@st.composite
def capacitors(draw, dims, max_charges=3, min_sep=0.3):
    """``(L, A, B, pi, charges, q)``: well separated charges, a random positive plan.

    ``charges`` are the ``N + M`` charge positions in ``R^{D+1}`` and ``q`` their signed charges
    ``(alpha, -beta)``: the plan's row and column sums.
    """
    D = draw(st.sampled_from(dims))
    N, M = draw(st.integers(1, max_charges)), draw(st.integers(1, max_charges))
    L = draw(st.floats(1.0, 6.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A, B = rng.uniform(-2, 2, (N, D)), rng.uniform(-2, 2, (M, D))
    pi = rng.uniform(0.2, 1.0, (N, M))
    pi /= pi.sum()
    charges = np.vstack([np.column_stack([np.zeros(N), A]), np.column_stack([np.full(M, L), B])])
    gaps = np.linalg.norm(charges[:, None] - charges[None], axis=-1) + np.eye(N + M) * 1e9
    assume(gaps.min() >= min_sep)
    return L, A, B, pi, charges, np.concatenate([pi.sum(axis=1), -pi.sum(axis=0)])


@st.composite
def spheres(draw, dims, enclose, margin):
    """A capacitor and a sphere ``(centre, r)`` around ``enclose`` charges.

    ``enclose``: ``"source"`` (centred on one source), ``"sink"`` (on one sink), ``"nothing"``
    or ``"several"`` (a free centre, 2 or more charges inside). Every charge is at least
    ``margin * r`` away from the sphere. Returns ``(cap, centre, r, enclosed_charge)``.
    """
    cap = draw(capacitors(dims))
    L, A, B, _, charges, q = cap
    N, K = len(A), len(charges)
    free = np.array([draw(st.floats(-1.0, L + 1.0))] + [draw(st.floats(-3.0, 3.0)) for _ in range(A.shape[1])])
    if enclose == "source":
        centre, m = charges[draw(st.integers(0, N - 1))], 1
    elif enclose == "sink":
        centre, m = charges[draw(st.integers(N, K - 1))], 1
    elif enclose == "nothing":
        centre, m = free, 0
    else:
        centre, m = free, draw(st.integers(2, K))
    dist = np.linalg.norm(charges - centre, axis=1)
    ordered = np.sort(dist)
    lo = ordered[m - 1] if m > 0 else 0.0
    hi = ordered[m] if m < K else 2 * lo + 1.0
    r = (lo + hi) / 2
    assume(hi - lo >= 2 * margin * r)
    return cap, centre, r, q[dist < r].sum()


gauss_legendre = functools.lru_cache(np.polynomial.legendre.leggauss)  # slow for n in the hundreds


def sphere_rule(D, n):
    """Nodes on ``S^D`` (``D = 1, 2``; column 0 is the z axis) and weights for ``integral f dS``.

    D = 1: the trapezoid rule in the angle (spectrally accurate for smooth periodic integrands).
    D = 2: Gauss-Legendre in ``cos(theta)`` times the trapezoid rule in ``phi``.
    """
    if D == 1:
        th = 2 * np.pi * np.arange(n) / n
        return np.column_stack([np.cos(th), np.sin(th)]), np.full(n, 2 * np.pi / n)
    c, wc = gauss_legendre(n)
    ph = 2 * np.pi * np.arange(2 * n) / (2 * n)
    C, PH = np.meshgrid(c, ph, indexing="ij")
    S = np.sqrt(1 - C**2)
    nodes = np.column_stack([C.ravel(), (S * np.cos(PH)).ravel(), (S * np.sin(PH)).ravel()])
    return nodes, np.repeat(wc * np.pi / n, 2 * n)


@pytest.mark.parametrize("enclose", ["source", "sink", "nothing", "several"])
@pytest.mark.parametrize("D", [1, 2])
def test_gauss_law_quadrature(D, enclose):
    """Flux out of a sphere = enclosed charge, to quadrature accuracy (charges >= 0.15 r away)."""

    @given(spheres(dims=[D], enclose=enclose, margin=0.15))
    def check(case):
        (L, A, B, pi, _, _), centre, r, enclosed = case
        nodes, w = sphere_rule(D, 256 if D == 1 else 128)
        E = pf.CoulombField(L).field(centre + r * nodes, A, B, plan=pi)
        flux = r**D * np.sum(w * np.einsum("kd,kd->k", E, nodes))
        assert flux == pytest.approx(enclosed, abs=1e-9)

    check()


@pytest.mark.parametrize("D", [3, 4])
def test_gauss_law_monte_carlo(D):
    """Higher D: flux by uniform directions on ``S^D``, ``|S^D| r^D mean(E . n)``, from
    ``direction`` and ``log_norm``; the error bound is 5 standard errors of the sample mean,
    and the test asks the standard error to be small enough for a wrong law to show."""

    @given(st.sampled_from(["source", "sink", "nothing", "several"]).flatmap(
        lambda e: spheres(dims=[D], enclose=e, margin=0.3)), st.integers(0, 2**32 - 1))
    def check(case, seed):
        (L, A, B, pi, _, _), centre, r, enclosed = case
        g = np.random.default_rng(seed).normal(size=(20000, D + 1))
        n = g / np.linalg.norm(g, axis=1, keepdims=True)
        u, log_norm = pf.CoulombField(L).direction(centre + r * n, A, B, plan=pi)
        samples = np.exp(log_norm + D * math.log(r) + log_sphere_area(D)) * np.einsum("kd,kd->k", u, n)
        se = samples.std() / math.sqrt(len(samples))
        assert se < 0.05
        assert abs(samples.mean() - enclosed) <= 5 * se

    check()


def free_points(charges, rng, n, L, D, min_dist):
    """Random points in ``[-1, L + 1] x [-3, 3]^D`` at least ``min_dist`` from every charge."""
    P = np.column_stack([rng.uniform(-1, L + 1, 4 * n), rng.uniform(-3, 3, (4 * n, D))])
    far = np.linalg.norm(P[:, None] - charges[None], axis=-1).min(axis=1) >= min_dist
    return P[far][:n]


@given(capacitors(dims=[1, 2, 3]), st.integers(0, 2**32 - 1))
def test_divergence_and_curl_vanish(cap, seed):
    """Central differences: ``|tr J|`` and ``|J - J^T|`` are < 1e-6 of ``|J|`` away from charges.

    Step ``h = 1e-4 * distance to the nearest charge``: truncation ``~ h^2`` and round-off
    ``~ eps / h`` relative errors are both far below the bound; a wrong power of ``|r|`` gives O(1).
    """
    L, A, B, pi, charges, _ = cap
    D = A.shape[1]
    P = free_points(charges, np.random.default_rng(seed), 8, L, D, 0.2)
    h = 1e-4 * np.linalg.norm(P[:, None] - charges[None], axis=-1).min(axis=1)
    steps = np.eye(D + 1)[None] * h[:, None, None]  # (n, direction, coordinate)
    field = pf.CoulombField(L).field
    Ep = field((P[:, None] + steps).reshape(-1, D + 1), A, B, plan=pi).reshape(len(P), D + 1, D + 1)
    Em = field((P[:, None] - steps).reshape(-1, D + 1), A, B, plan=pi).reshape(len(P), D + 1, D + 1)
    J = (Ep - Em) / (2 * h[:, None, None])  # J[p, l, k] = dE_k / dx_l
    scale = np.linalg.norm(J, axis=(1, 2))
    assert np.all(np.abs(np.trace(J, axis1=1, axis2=2)) <= 1e-6 * scale)
    assert np.all(np.abs(J - J.transpose(0, 2, 1)).max(axis=(1, 2)) <= 1e-6 * scale)


@given(capacitors(dims=[1, 2, 3]), st.integers(0, 2**32 - 1))
def test_where_field_points(cap, seed):
    """Sources (+) on ``z = 0`` and sinks (-) on ``z = L`` both push ``E_z`` up between the plates,

        E_z = sum_i alpha_i z / |S^D||r_i|^(D+1) + sum_j beta_j (L - z) / |S^D||r_j|^(D+1) > 0,

    so reversal happens behind ``P``: just behind a source (``z < 0``) ``E_z < 0``, the lines
    leave ``P`` backwards. On the plate ``z = L`` away from the sinks only the sources act and
    ``E_z > 0``: every line that reaches ``Q`` off a sink crosses it (leakage); behind ``Q`` the
    field is not zero (unlike the strong field).
    """
    L, A, B, pi, charges, _ = cap
    D = A.shape[1]
    rng = np.random.default_rng(seed)
    coul = pf.CoulombField(L)
    gap = free_points(charges, rng, 16, L, D, 0.05)
    gap[:, 0] = rng.uniform(0, L, len(gap))
    gap = gap[np.linalg.norm(gap[:, None] - charges[None], axis=-1).min(axis=1) > 1e-3]
    assert np.all(coul.direction(gap, A, B, plan=pi)[0][:, 0] > 0)

    eps = 1e-3 * rng.uniform(0.5, 1.0, len(A))
    behind_sources = np.column_stack([-eps, A + 0.1 * eps[:, None] * rng.normal(size=A.shape)])
    assert np.all(coul.direction(behind_sources, A, B, plan=pi)[0][:, 0] < 0)

    on_Q = free_points(charges, rng, 16, L, D, 0.05)
    on_Q[:, 0] = L
    beyond_Q = on_Q + np.eye(D + 1)[0] * rng.uniform(0.01, 1.0, (len(on_Q), 1))
    assert np.all(coul.direction(on_Q, A, B, plan=pi)[0][:, 0] > 0)
    assert np.all(np.isfinite(coul.direction(beyond_Q, A, B, plan=pi)[1]))


@given(capacitors(dims=[1]))
def test_half_the_flux_leaks_through_Q_and_returns_through_P(cap):
    """How much: on ``z = L`` only the sources act, and a charge's flux through a plane it does
    not touch is half its charge, so ``integral E_z(L, x) dx = 1/2`` (half of all flux crosses
    ``Q`` outward); likewise ``integral E_z(0, x) dx = 1/2`` enters the gap through ``P`` from
    behind (the lines that left backwards). D = 1, Gauss-Legendre in ``x = c + tan(theta)``."""
    L, A, B, pi, _, _ = cap
    th, w = gauss_legendre(400)
    th = th * np.pi / 2
    coul = pf.CoulombField(L)
    for plate, charges in ((L, B), (0.0, A)):
        x = charges.mean() + L * np.tan(th)
        E = coul.field(np.column_stack([np.full_like(x, plate), x]), A, B, plan=pi)
        flux = np.sum(w * np.pi / 2 * E[:, 0] * L / np.cos(th) ** 2)
        assert flux == pytest.approx(0.5, abs=1e-9)


def conditioning(P, A, B, pi, L):
    """``sum_k |q_k| / |r_k|^D`` over ``|S^D| |E|``: how much the superposition cancels."""
    charges = np.vstack([np.column_stack([np.zeros(len(A)), A]), np.column_stack([np.full(len(B), L), B])])
    q = np.concatenate([pi.sum(axis=1), pi.sum(axis=0)])
    D = A.shape[1]
    r = np.linalg.norm(P[:, None] - charges[None], axis=-1)
    log_terms = np.log(q) - D * np.log(r)
    m = log_terms.max(axis=1)
    _, log_norm = pf.CoulombField(L).direction(P, A, B, plan=pi, backend="numpy")
    return np.exp(m + np.log(np.exp(log_terms - m[:, None]).sum(axis=1)) - log_sphere_area(D) - log_norm)


@given(capacitors(dims=[1, 2, 3, 5], max_charges=4), st.integers(0, 2**32 - 1))
def test_backends_agree(cap, seed):
    """numba (direct and GEMM) = the NumPy reference to 1e-10 relative in float64, times the
    conditioning of the superposition (large only near a null point); float32 inputs give a
    finite result within 1e-4 (times the conditioning) of float64 on the same rounded inputs."""
    L, A, B, pi, charges, _ = cap
    D = A.shape[1]
    P = free_points(charges, np.random.default_rng(seed), 16, L, D, 0.05)
    coul = pf.CoulombField(L)
    u_ref, ln_ref = coul.direction(P, A, B, plan=pi, backend="numpy")
    cond = conditioning(P, A, B, pi, L)
    for method in ("direct", "gemm"):
        u, ln = coul.direction(P, A, B, plan=pi, backend="numba", method=method)
        assert np.all(np.abs(u - u_ref).max(axis=1) <= 1e-10 * cond)
        assert np.all(np.abs(ln - ln_ref) <= 1e-10 * cond)

    P32, A32, B32 = (a.astype(np.float32) for a in (P, A, B))
    u64, ln64 = coul.direction(*(a.astype(np.float64) for a in (P32, A32, B32)), plan=pi, backend="numpy")
    for backend in BACKENDS:
        u, ln = coul.direction(P32, A32, B32, plan=pi, backend=backend)
        assert u.dtype == np.float32 and ln.dtype == np.float64
        assert np.all(np.isfinite(u)) and np.all(np.isfinite(ln))
        assert np.all(np.abs(u - u64).max(axis=1) <= 1e-4 * cond)
        assert np.all(np.abs(ln - ln64) <= 1e-4 * cond)


def log_space_field(P, A, B, alpha, beta, L):
    """Independent float64 evaluation: per point, ``l_k = log q_k - (D+1) log|r_k|``,
    ``V = sum_k sign_k exp(l_k - max l) r_k``, ``log|E| = max l + log|V| - log|S^D|``."""
    D = A.shape[1]
    charges = [(np.concatenate([[0.0], a]), math.log(q), 1.0) for a, q in zip(A, alpha)]
    charges += [(np.concatenate([[L], b]), math.log(q), -1.0) for b, q in zip(B, beta)]
    U, LN = [], []
    for p in P:
        terms = [(sign, logq - (D + 1) * math.log(math.sqrt(math.fsum((p - c) ** 2))), p - c)
                 for c, logq, sign in charges]
        top = max(l for _, l, _ in terms)
        V = sum(sign * math.exp(l - top) * r for sign, l, r in terms)
        size = math.sqrt(math.fsum(V**2))
        U.append(V / size)
        LN.append(top + math.log(size) - log_sphere_area(D))
    return np.array(U), np.array(LN)


@pytest.mark.parametrize("D", [3072, 10_000])
def test_direction_at_large_dimension(D):
    """At D = 3072 and 10^4 (``|r|^-(D+1)`` underflows) every backend/method gives finite unit
    rows and ``log|E|`` equal to the log-space evaluation above: float64 within 1e-13 relative
    (GEMM's cancellation costs ``~ (D+1)/2 * D eps`` in the log), float32 within 1e-5 relative."""
    rng = np.random.default_rng(D)
    L, N, M, n = 6.0, 3, 4, 6
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 0.5
    t = rng.uniform(0.05, 0.95, n)
    X = (1 - t)[:, None] * A[rng.integers(0, N, n)] + t[:, None] * B[rng.integers(0, M, n)]
    P = np.column_stack([t * L, X + 0.3 * rng.normal(size=(n, D))])
    u_ref, ln_ref = log_space_field(P, A, B, np.full(N, 1 / N), np.full(M, 1 / M), L)
    assert np.all(np.exp(ln_ref) == 0)  # |E| itself underflows float64
    coul = pf.CoulombField(L)
    for dtype, rel in ((np.float64, 1e-13), (np.float32, 1e-5)):
        for backend, method in (("numpy", "auto"), ("numba", "direct"), ("numba", "gemm")):
            u, ln = coul.direction(P.astype(dtype), A.astype(dtype), B.astype(dtype),
                                   plan="independent", backend=backend, method=method)
            assert u.dtype == dtype and np.all(np.isfinite(u)) and np.all(np.isfinite(ln))
            assert np.allclose(np.linalg.norm(u.astype(np.float64), axis=1), 1, atol=10 * np.finfo(dtype).eps)
            assert np.allclose(ln, ln_ref, rtol=rel, atol=0)
            assert np.abs(u - u_ref).max() <= 100 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_point_on_charge_is_an_error(backend, dtype):
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=(3, 2)).astype(dtype)
    coul = pf.CoulombField(L=2.0)
    for on in (np.concatenate([[0.0], A[1]]), np.concatenate([[2.0], B[2]])):
        P = np.vstack([[1.0, 0.0, 0.0], on]).astype(dtype)
        with pytest.raises(ValueError, match="charge") as err:
            coul.direction(P, A, B, backend=backend)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("offset", [1e-6, 1e-100, 1e-150, 1e-160, 1e-200, 1e-300])
def test_point_next_to_charge(offset, backend, D):
    """A point ``offset`` from a charge (offset down to 1e-300, where ``|r|^2`` underflows) sees
    that charge alone: ``u = +-r/|r|`` and ``log|E| = log q - log|S^D| - D log(offset)``."""
    L = 1.0
    A = np.zeros((2, D))
    A[1, 0] = 1.0
    B = A.copy()
    e1 = np.eye(D + 1)[1]
    P = np.array([offset * np.eye(D + 1)[0],  # in front of source 0 at the origin
                  offset * e1,                # beside it, on P
                  L * np.eye(D + 1)[0] + offset * e1])  # beside sink 0, on Q
    u, ln = pf.CoulombField(L).direction(P, A, B, plan="paired", backend=backend)
    others = 10 * offset**D  # relative size of the other charges' fields
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(ln))
    assert np.allclose(u, [np.eye(D + 1)[0], e1, -e1], rtol=0, atol=1e-12 + others)
    assert np.allclose(ln, math.log(0.5) - log_sphere_area(D) - D * math.log(offset), rtol=1e-12, atol=others)


@pytest.mark.parametrize("D", [16, 64])
@pytest.mark.parametrize("offset", [1e-3, 1e-5])
def test_gemm_near_a_charge(offset, D):
    """``method="auto"`` takes the GEMM form at these D; near a charge (where tracing starts,
    field lines) it must still match the reference to 1e-10 relative."""
    rng = np.random.default_rng(D)
    A, B = rng.normal(size=(3, D)), rng.normal(size=(3, D))
    P = np.vstack([np.concatenate([[offset], A[0]]), np.concatenate([[0.0], A[1] + offset / math.sqrt(D)])])
    coul = pf.CoulombField(6.0)
    u_ref, ln_ref = coul.direction(P, A, B, backend="numpy")
    u, ln = coul.direction(P, A, B, backend="numba", method="auto")
    assert np.abs(u - u_ref).max() <= 1e-10
    assert np.allclose(ln, ln_ref, rtol=1e-10, atol=0)


@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 20), st.integers(0, 2**16))
def test_effective_number_of_charges(N, M, D, seed):
    """``ess = (sum m_c)^2 / sum m_c^2`` of the charges' magnitudes ``m_c = q_c / (|S^D| r_c^D)``:
    the same on every backend and method, within ``[1, N + M]``, and from the formula itself."""
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 1
    P = np.column_stack([rng.uniform(-1, 7, 6), rng.normal(size=(6, D))])
    plan = rng.uniform(0.1, 1, (N, M))
    plan /= plan.sum()
    field = pf.CoulombField(L=6.0)
    charges = np.concatenate([np.column_stack([np.zeros(N), A]), np.column_stack([np.full(M, 6.0), B])])
    log_q = np.log(np.concatenate([plan.sum(1), plan.sum(0)]))
    r = np.sqrt(((P[:, None, :] - charges[None]) ** 2).sum(-1))
    m = np.exp(log_q - D * np.log(r) - (log_q - D * np.log(r)).max(axis=1, keepdims=True))
    expected = m.sum(1) ** 2 / (m**2).sum(1)
    for backend, method in (("numpy", "auto"), ("numba", "direct"), ("numba", "gemm")):
        _, _, ess = field.direction(P, A, B, plan=plan, backend=backend, method=method, return_ess=True)
        np.testing.assert_allclose(ess, expected, rtol=1e-9)
        assert np.all((ess >= 1 - 1e-12) & (ess <= N + M + 1e-9))
