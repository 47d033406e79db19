"""Property tests of the strong (IFM) field (the README's mathematics).

Every property is checked on random sources, sinks, plans, dimensions and points drawn by
hypothesis (sizes bounded, examples deterministic through the conftest profile). Random arrays
come from a NumPy generator seeded by hypothesis. The width profile and the one-pair field line
are written out here independently of :mod:`physfield.fields.strong`, so the tests do not reuse the
code they check.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln, logsumexp

import physfield as pf
from physfield.kernels import engine

PLANS = ("paired", "independent", "optimal", "sinkhorn", "dense", "sparse")
EPS64 = np.finfo(np.float64).eps


def width(z, L, sigma0, d):
    """``sigma(z)`` and ``sigma'(z)`` of the strong field (``k = pi / 2d``), for ``0 < z < L``."""
    z = np.asarray(z, dtype=np.float64)
    k = np.pi / (2 * d)
    left, right = z < d, z > L - d
    sigma = sigma0 * np.where(left, np.sin(k * z), np.where(right, np.sin(k * (L - z)), 1.0))
    slope = sigma0 * k * np.where(left, np.cos(k * z), np.where(right, -np.cos(k * (L - z)), 0.0))
    return sigma, slope


@dataclass
class Setup:
    field: pf.StrongField
    A: np.ndarray  # sources (N, D) on z = 0
    B: np.ndarray  # sinks (M, D) on z = L
    plan: object  # what is passed to the field: a name or an explicit array
    pi: np.ndarray  # the same plan as a dense (N, M) array
    rng: np.random.Generator

    @property
    def L(self):
        return self.field.L

    @property
    def D(self):
        return self.A.shape[1]

    def sigma(self, z):
        return width(z, self.L, self.field.sigma0, self.field.d)

    def near_strings(self, z, spread=1.0):
        """Points ``(z, c_ij(z) + spread sigma(z) xi)``, ``(i, j) ~ pi``, ``xi ~ N(0, I)``."""
        z = np.asarray(z, dtype=np.float64)
        k = self.rng.choice(self.pi.size, size=len(z), p=self.pi.ravel())
        i, j = np.unravel_index(k, self.pi.shape)
        t = (z / self.L)[:, None]
        centre = (1 - t) * self.A[i] + t * self.B[j]
        scale = np.broadcast_to(spread * self.sigma(z)[0], z.shape)
        return np.column_stack([z, centre + scale[:, None] * self.rng.normal(size=centre.shape)])

    def direction(self, points, **kw):
        return self.field.direction(points, self.A, self.B, plan=self.plan, **kw)


def explicit_plan(kind, rng, n, m):
    """A random dense or sparse plan with about 30 % zeros (at least one non-zero)."""
    pi = rng.random((n, m)) * (rng.random((n, m)) < 0.7)
    pi.flat[rng.integers(pi.size)] += 1.0
    pi /= pi.sum()
    return sp.csr_array(pi) if kind == "sparse" else pi


@st.composite
def setups(draw, dims=st.integers(1, 3), max_charges=6, plans=PLANS, ends=(0.05, 0.5),
           sigma0=(0.3, 1.5), offset=0.0):
    """A random field configuration: ``D`` from ``dims``, ``d / L`` from ``ends``, data of unit
    scale moved by ``offset`` in every coordinate."""
    D = draw(dims)
    kind = draw(st.sampled_from(plans))
    N = draw(st.integers(1, max_charges))
    M = N if kind == "paired" else draw(st.integers(1, max_charges))
    L = draw(st.floats(2.0, 8.0))
    field = pf.StrongField(L=L, sigma0=draw(st.floats(*sigma0)), d=L * draw(st.sampled_from(ends)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A = offset + rng.normal(size=(N, D))
    B = offset + rng.normal(size=(M, D)) + rng.normal(size=D)
    plan = explicit_plan(kind, rng, N, M) if kind in ("dense", "sparse") else kind
    pi = pf.plans.resolve(plan, A, B)
    pi = pi.toarray() if sp.issparse(pi) else np.asarray(pi)
    return Setup(field, A, B, plan, pi, rng)


def log_space_field(P, s):
    """Independent float64 log-space evaluation of the strong field.

    ``l_k = log pi_k - |rho_k|^2 / 2 sigma^2``, ``w = softmax(l)``, slope ``sum_k w_k v_k`` with
    ``v_k = (b - a)/L + (sigma'/sigma) rho_k``, and
    ``log|E| = logsumexp(l) - D/2 log(2 pi sigma^2) + 1/2 log(1 + |slope|^2)``.
    """
    z, X = P[:, 0], P[:, 1:]
    I, J = np.nonzero(s.pi)
    a, b = s.A[I], s.B[J]
    t = (z / s.L)[:, None, None]
    rho = X[:, None, :] - ((1 - t) * a + t * b)
    sigma, dsigma = s.sigma(z)
    logits = np.log(s.pi[I, J]) - (rho**2).sum(axis=-1) / (2 * sigma[:, None] ** 2)
    lse = logsumexp(logits, axis=1)
    w = np.exp(logits - lse[:, None])
    slope = np.einsum("pk,pkd->pd", w, (b - a) / s.L + (dsigma / sigma)[:, None, None] * rho)
    sq = (slope**2).sum(axis=1)
    log_norm = lse - s.D / 2 * np.log(2 * np.pi * sigma**2) + 0.5 * np.log1p(sq)
    return np.column_stack([np.ones(len(P)), slope]) / np.sqrt(1 + sq)[:, None], log_norm


def assert_unit_rows(u, tol):
    assert np.all(np.isfinite(u))
    assert np.max(np.abs(np.linalg.norm(u.astype(np.float64), axis=1) - 1)) <= tol


# 1. divergence -------------------------------------------------------------------------------


@given(s=setups())
def test_divergence_free_inside(backend, s):
    """``div E = dE_z/dz + sum_k dE_k/dx_k = 0`` for ``0 < z < L`` (central differences).

    Step ``h = 1e-5 sigma(z)``: truncation ``~(h/sigma)^2``, round-off ``~eps/(h/sigma)``, both
    far below the tolerance ``1e-6`` relative to ``sum |partials| + |E|/sigma``.
    """
    z = s.L * s.rng.uniform(0.005, 0.995, size=4)
    P = s.near_strings(z)
    n, D1 = P.shape
    h = 1e-5 * s.sigma(z)[0]
    steps = h[:, None, None] * np.eye(D1)
    E_plus = s.field.field((P[:, None] + steps).reshape(-1, D1), s.A, s.B, plan=s.plan, backend=backend)
    E_minus = s.field.field((P[:, None] - steps).reshape(-1, D1), s.A, s.B, plan=s.plan, backend=backend)
    diff = (E_plus - E_minus).reshape(n, D1, D1)
    partials = np.einsum("pkk->pk", diff) / (2 * h[:, None])
    E = s.field.field(P, s.A, s.B, plan=s.plan, backend=backend)
    scale = np.abs(partials).sum(axis=1) + np.linalg.norm(E, axis=1) / s.sigma(z)[0]
    assert np.all(scale > 0)
    assert np.all(np.abs(partials.sum(axis=1)) <= 1e-6 * scale)


# 2. no reversal inside, no field outside ------------------------------------------------------


@given(s=setups(dims=st.integers(1, 20)))
def test_positive_ez_inside_and_zero_outside(backend, s):
    """``E_z > 0`` at every point with ``0 < z < L`` (near the strings, far from them, within
    ``1e-11 L`` of a plate) and ``E = 0`` exactly for ``z <= 0`` and ``z >= L``."""
    rng, L = s.rng, s.L
    depth = 10.0 ** -rng.uniform(1, 11, size=4)
    z_in = L * np.concatenate([rng.uniform(0, 1, size=4), depth, 1 - depth])
    spread = 10.0 ** rng.uniform(0, 2, size=len(z_in))
    far = np.column_stack([L * rng.uniform(0, 1, size=4), rng.uniform(-50, 50, size=(4, s.D))])
    z_out = np.array([0.0, -0.0, L, -1e-300, -L * rng.uniform(), L * (1 + 1e-12), L * (1 + rng.uniform())])
    P = np.concatenate([s.near_strings(z_in, spread), far, s.near_strings(z_out)])
    inside = (P[:, 0] > 0) & (P[:, 0] < L)
    assert inside.sum() == len(z_in) + len(far)

    u, log_norm = s.direction(P, backend=backend)
    assert np.all(u[inside, 0] > 0)
    assert np.all(np.isfinite(log_norm[inside]))
    assert_unit_rows(u[inside], 1e-12)
    assert np.all(u[~inside] == 0)
    assert np.all(log_norm[~inside] == -np.inf)

    E = s.field.field(P, s.A, s.B, plan=s.plan, backend=backend)
    assert np.all(E[~inside] == 0)
    representable = inside & (log_norm > -700)
    assert np.all(E[representable, 0] > 0)


# 3. flux conservation ------------------------------------------------------------------------


def riemann_flux(s, z):
    """``integral E_z(z, x) dx`` by a Riemann sum, step ``0.6 sigma(z)``, on a box covering every
    string centre ``(1 - t) a_i + t b_j`` by ``12 sigma``. ``E_z`` is a Gaussian mixture in ``x``,
    for which the sum is exact up to ``~2 exp(-2 pi^2 / 0.36) = 3e-24`` per dimension
    (Poisson summation) plus the ``exp(-72)`` tails cut off."""
    sigma = s.sigma(z)[0]
    t = z / s.L
    lo = (1 - t) * s.A.min(axis=0) + t * s.B.min(axis=0) - 12 * sigma
    hi = (1 - t) * s.A.max(axis=0) + t * s.B.max(axis=0) + 12 * sigma
    h = 0.6 * sigma
    axes = [np.arange(lo_k, hi_k + h, h) for lo_k, hi_k in zip(lo, hi)]
    X = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, s.D)
    E = s.field.field(np.column_stack([np.full(len(X), z), X]), s.A, s.B, plan=s.plan)
    return E[:, 0].sum() * h**s.D


@given(s=setups(dims=st.integers(1, 2)))
def test_flux_through_planes_is_one_quadrature(s):
    """``integral E_z dx = sum(pi) = 1`` on planes across the gap, D = 1 down to ``1e-4 L`` from
    the plates; D = 2 where ``sigma(z) >= sigma0 / 5`` (keeps the grid small)."""
    if s.D == 1:
        depth = 10.0 ** -s.rng.uniform(1, 4, size=2)
        z = s.L * np.array([s.rng.uniform(), depth[0], 1 - depth[1]])
    else:
        z_min = np.arcsin(0.2) * 2 * s.field.d / np.pi
        z = z_min + (s.L - 2 * z_min) * s.rng.uniform(size=3)
    for plane in z:
        assert abs(riemann_flux(s, plane) - 1) < 1e-9


def log_student(y, tau, nu):
    """Log density of the isotropic multivariate Student-t (scale ``tau``, ``nu`` d.o.f.) at rows ``y``."""
    D = y.shape[-1]
    return (gammaln((nu + D) / 2) - gammaln(nu / 2) - D / 2 * np.log(nu * np.pi) - D * np.log(tau)
            - (nu + D) / 2 * np.log1p((y**2).sum(axis=-1) / (nu * tau**2)))


@settings(max_examples=10)
@given(s=setups(dims=st.integers(4, 6)))
def test_flux_through_planes_is_one_importance_sampling(s):
    """``integral E_z dx = E_q[E_z / q] = 1`` in D = 4..6 by importance sampling.

    The proposal ``q`` is not the field: an equal-weight mixture over all ``N M`` centres
    ``(1 - t) a_i + t b_j`` (whatever the plan) of Student-t kernels (5 d.o.f., scale
    ``1.25 sigma(z)``), heavier-tailed than every Gaussian of ``E_z``, so ``E_z / q`` is bounded.
    """
    n, nu = 40_000, 5
    z = s.L * s.rng.uniform(0.01, 0.99)
    tau, t = 1.25 * s.sigma(z)[0], z / s.L
    centres = ((1 - t) * s.A[:, None, :] + t * s.B[None, :, :]).reshape(-1, s.D)
    k = s.rng.integers(len(centres), size=n)
    radial = np.sqrt(s.rng.chisquare(nu, size=n) / nu)
    X = centres[k] + tau * s.rng.normal(size=(n, s.D)) / radial[:, None]
    log_q = logsumexp(log_student(X[:, None, :] - centres[None], tau, nu), axis=1) - np.log(len(centres))
    u, log_norm = s.direction(np.column_stack([np.full(n, z), X]))
    ratio = np.exp(log_norm + np.log(u[:, 0]) - log_q)
    mean, stderr = ratio.mean(), ratio.std() / np.sqrt(n)
    assert stderr < 0.01
    assert abs(mean - 1) < 5 * stderr


# 4. the field line of one pair ---------------------------------------------------------------

ONE_PAIR = dict(max_charges=1, plans=("paired",))


def line(s, z, offsets):
    """``x(z) = c(z) + sigma(z) u / sigma0`` for each row ``u`` of ``offsets``: ``(len(z), n, D)``."""
    a, b = s.A[0], s.B[0]
    z = np.atleast_1d(z)
    return (a + (z / s.L)[:, None, None] * (b - a)
            + (s.sigma(z)[0] / s.field.sigma0)[:, None, None] * offsets[None])


def slope(s, z, X, backend="auto"):
    """``dx/dz = E_x / E_z`` at the points ``(z, X_r)``."""
    u, _ = s.direction(np.column_stack([np.full(len(X), z), X]), backend=backend)
    return u[:, 1:] / u[:, :1]


@given(s=setups(dims=st.integers(1, 4), **ONE_PAIR))
def test_one_pair_field_is_tangent_to_closed_form_line(s):
    """At ``x(z) = c(z) + sigma(z) u / sigma0`` the field points along
    ``dx/dz = (b - a)/L + sigma'(z) u / sigma0``, the derivative of that curve. The error allowed
    is the conditioning of the slope: ``s(z) = sigma'/sigma`` times the round-off of ``x - c``."""
    a, b = s.A[0], s.B[0]
    depth = 10.0 ** -s.rng.uniform(1, 8, size=3)
    z = s.L * np.concatenate([s.rng.uniform(size=3), depth, 1 - depth])
    offsets = s.field.sigma0 * s.rng.normal(size=(3, s.D))
    X = line(s, z, offsets)
    u, _ = s.direction(np.column_stack([np.repeat(z, len(offsets)), X.reshape(-1, s.D)]))
    sigma, dsigma = s.sigma(z)
    expected = (b - a) / s.L + (dsigma / s.field.sigma0)[:, None, None] * offsets
    magnitude = np.abs(X).max() + np.abs(a).max() + np.abs(b).max()
    tol = 1e-12 * np.abs(expected) + 64 * EPS64 * magnitude * (1 / s.L + np.abs(dsigma / sigma))[:, None, None]
    assert np.all(np.abs((u[:, 1:] / u[:, :1]).reshape(expected.shape) - expected) <= tol)


def rk4(f, x0, grid):
    """Classical Runge-Kutta for ``dx/dz = f(z, x)`` over the nodes of ``grid``; all nodes returned."""
    xs = [x0]
    for z0, z1 in zip(grid[:-1], grid[1:]):
        h, x = z1 - z0, xs[-1]
        k1 = f(z0, x)
        k2 = f(z0 + h / 2, x + h / 2 * k1)
        k3 = f(z0 + h / 2, x + h / 2 * k2)
        k4 = f(z1, x + h * k3)
        xs.append(x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    return np.stack(xs)


@settings(max_examples=8)
@given(s=setups(dims=st.integers(1, 3), **ONE_PAIR))
def test_one_pair_field_line_integrates_to_the_sink(s):
    """Integrating ``dx/dz = E_x / E_z`` with RK4 from ``z = eps`` on the closed-form line follows
    it to ``z = L - eps`` and ends at ``b + sigma(L - eps) u / sigma0`` (up to ``eps |b - a| / L``);
    where ``d <= z <= L - d`` the line is straight and parallel to ``b - a``.

    Nodes ``z = L (1 - cos(pi theta)) / 2``, ``theta`` uniform (dense near the plates, where
    ``s(z) ~ 1/z``), plus ``d`` and ``L - d``, where ``sigma''`` jumps, so no step straddles them.
    The integrator's many small calls use the NumPy reference (fastest for a few points); the
    other backends are held to it by :func:`test_backends_agree_float64`."""
    L, a, b = s.L, s.A[0], s.B[0]
    eps = 1e-3 * L
    theta0 = np.arccos(1 - 2 * eps / L) / np.pi
    grid = L * (1 - np.cos(np.pi * np.linspace(theta0, 1 - theta0, 201))) / 2
    grid = np.union1d(grid, [s.field.d, L - s.field.d])
    offsets = s.field.sigma0 * s.rng.normal(size=(4, s.D))
    exact = line(s, grid, offsets)
    xs = rk4(lambda z, X: slope(s, z, X, backend="numpy"), exact[0], grid)
    size = s.field.sigma0 * (1 + np.abs(offsets).max()) + np.abs(b - a).max()
    assert np.abs(xs - exact).max() <= 5e-6 * size
    end = b + s.sigma(L - eps)[0] / s.field.sigma0 * offsets
    assert np.abs(xs[-1] - end).max() <= eps * np.abs(b - a).max() / L + 5e-6 * size

    middle = (grid >= s.field.d) & (grid <= L - s.field.d)
    for z, X in zip(grid[middle], xs[middle]):
        assert np.allclose(slope(s, z, X, backend="numpy"), (b - a) / L, rtol=1e-12, atol=1e-12)
    if middle.sum() > 1:
        z_mid, x_mid = grid[middle], xs[middle]
        drift = x_mid - x_mid[0] - (z_mid - z_mid[0])[:, None, None] * (b - a) / L
        assert np.abs(drift).max() <= 1e-10 * size


# 5. backend agreement ------------------------------------------------------------------------


@given(s=setups(dims=st.integers(1, 8)))
def test_backends_agree_float64(s):
    """Numba (``direct`` and ``gemm``) equals the NumPy reference to 1e-10 relative in float64
    for every kind of plan, away from the plates; ``1 <= ess <= number of pairs``."""
    z = s.L * s.rng.uniform(0.05, 0.95, size=8)
    P = s.near_strings(z, spread=10.0 ** s.rng.uniform(-1, 0.7, size=8))
    u_ref, log_ref, ess_ref = s.direction(P, backend="numpy", return_ess=True)
    pairs = np.count_nonzero(s.pi)
    assert np.all(ess_ref >= 1 - 1e-12) and np.all(ess_ref <= pairs * (1 + 1e-12))
    for method in ("direct", "gemm"):
        u, log_norm, ess = s.direction(P, backend="numba", method=method, return_ess=True)
        assert np.abs(u - u_ref).max() <= 1e-10
        assert np.all(np.abs(log_norm - log_ref) <= 1e-10 * np.maximum(1, np.abs(log_ref)))
        assert np.all(np.abs(ess - ess_ref) <= 1e-10 * ess_ref)


def gemm_error_scales(s, P, eps):
    """Per point: ``dl``, the bound of :mod:`physfield.engine` on the GEMM error of each
    log-weight at unit round-off ``eps``, and ``v_max = max_k |v_k|``, the largest pair slope.

    After centring on the mean charge, ``|x - a|^2`` from inner products errs by at most about
    ``delta = D eps (|x_c|^2 + |a_c|^2)``; ``|rho|^2 = (1 - t) alpha + t beta - t (1 - t) gamma``
    then errs by ``<= 1.25 delta`` and each log-weight by ``dl = 1.25 delta / 2 sigma^2``.
    """
    z, X = P[:, 0].astype(np.float64), P[:, 1:].astype(np.float64)
    charges = np.concatenate([s.A, s.B])
    centre = charges.mean(axis=0)
    S = ((X - centre) ** 2).sum(axis=1) + ((charges - centre) ** 2).sum(axis=1).max()
    sigma, dsigma = s.sigma(z)
    I, J = np.nonzero(s.pi)
    t = (z / s.L)[:, None, None]
    rho = X[:, None, :] - ((1 - t) * s.A[I] + t * s.B[J])
    v = (s.B[J] - s.A[I]) / s.L + (dsigma / sigma)[:, None, None] * rho
    return 1.25 * s.D * eps * S / (2 * sigma**2), np.linalg.norm(v, axis=-1).max(axis=1)


@settings(max_examples=10)
@given(s=setups(dims=st.integers(16, 256), offset=1e4))
def test_gemm_within_documented_bound(s):
    """``gemm`` vs ``direct`` within the bound of :mod:`physfield.engine`.

    With the log-weights off by ``dl`` (:func:`gemm_error_scales`) the pair weights move by
    ``<= 2 dl`` relative, the slope (and ``u``) by ``<= 2 dl max_k |v_k|`` and ``log|E|`` by
    ``<= dl`` plus that; a factor 2 is allowed on top. The data sit 1e4 away from the origin:
    uncentred, nearly every distance would fall below the refinement threshold and be
    recomputed by differences (exact, but the direct form's cost), so most must not be.
    """
    z = s.L * s.rng.uniform(0.02, 0.98, size=6)
    P = s.near_strings(z, spread=10.0 ** s.rng.uniform(-1, 0.5, size=6))
    u_d, log_d = s.direction(P, backend="numba", method="direct")
    u_g, log_g = s.direction(P, backend="numba", method="gemm")
    dl, v_max = gemm_error_scales(s, P, EPS64)
    floor = 1e-12 * (1 + v_max)
    d_slope = 2 * dl * v_max
    assert np.all(np.abs(u_g - u_d).max(axis=1) <= 2 * d_slope + floor)
    assert np.all(np.abs(log_g - log_d) <= 2 * (dl + d_slope) + floor * np.maximum(1, np.abs(log_d)))
    charges = engine.plates(np, s.A, s.B, gemm=True)
    Xc = P[:, 1:] - charges.centre
    near = np.concatenate(engine.sq_dists(None, np, P[:, 1:], Xc, (Xc * Xc).sum(axis=1), charges)[2], axis=1)
    assert near.mean() < 0.5


# 6. high dimension ---------------------------------------------------------------------------


@settings(max_examples=6)
@given(s=setups(dims=st.sampled_from([3072, 10_000]), max_charges=4, plans=("independent",),
                sigma0=(0.5, 1.5)))
def test_direction_high_d_matches_log_space_evaluation(s):
    """At ``D = 3072`` and ``10^4`` ``direction`` is finite with unit rows and matches the
    float64 log-space evaluation of :func:`log_space_field`; ``field`` itself underflows to 0
    there (``(2 pi sigma^2)^(-D/2)`` alone is below ``1e-300``) while ``log|E|`` stays finite."""
    z = s.L * np.concatenate([s.rng.uniform(0.02, 0.98, size=2), s.rng.uniform(0.25, 0.75, size=1)])
    P = s.near_strings(z)
    u, log_norm = s.direction(P)
    u_ref, log_ref = log_space_field(P, s)
    assert_unit_rows(u, 1e-12)
    assert np.all(np.isfinite(log_norm))
    assert np.all(np.abs(log_norm - log_ref) <= 1e-9 * np.abs(log_ref))
    assert np.abs(u - u_ref).max() <= 1e-10

    middle = slice(2, 3)  # sigma(z) >= sigma0 sin(pi/4) >= 0.35: log|E| ~ -D/2 (log(2 pi sigma^2) + 1)
    assert np.all(log_ref[middle] < np.log(np.finfo(np.float64).smallest_subnormal))
    assert np.all(s.field.field(P[middle], s.A, s.B, plan=s.plan) == 0)


def test_field_overflow_is_never_nan():
    """Where ``|E|`` exceeds float64 (``D = 3072``, ``sigma = 0.2``: ``log|E| = 2121``) ``field``
    may saturate but must not turn the exactly-zero components of ``u`` into NaN."""
    D = 3072
    field = pf.StrongField(L=6.0, sigma0=0.2, d=3.0)
    points = np.zeros((1, D + 1))
    points[0, 0] = 3.0
    _, log_norm = field.direction(points, np.zeros((1, D)), np.zeros((1, D)))
    assert np.isfinite(log_norm).all() and log_norm[0] > np.log(np.finfo(np.float64).max)
    E = field.field(points, np.zeros((1, D)), np.zeros((1, D)))
    assert not np.isnan(E).any()
    assert np.all(E[:, 1:] == 0)


# 7. float32 ----------------------------------------------------------------------------------


@settings(max_examples=10)
@given(s=setups(dims=st.sampled_from([2, 64])))
def test_float32_direction(s):
    """float32 inputs (numba, ``method="auto"``: direct at D = 2, GEMM at D = 64) give float32
    unit rows (to 1e-5), finite, within 1e-4 of float64 run on the same float32-rounded inputs.
    ``log|E|`` agrees to 1e-4 relative plus, for the GEMM form, its documented cancellation
    error at float32 round-off (:func:`gemm_error_scales`), which grows as ``1/sigma(z)^2``
    near the plates."""
    z = s.L * s.rng.uniform(0.01, 0.99, size=8)
    P, A, B = (np.asarray(x, dtype=np.float32) for x in (s.near_strings(z), s.A, s.B))
    u32, log32 = s.field.direction(P, A, B, plan=s.plan, backend="numba")
    u64, log64 = s.field.direction(*(x.astype(np.float64) for x in (P, A, B)), plan=s.plan, backend="numba")
    assert u32.dtype == np.float32
    assert_unit_rows(u32, 1e-5)
    assert np.all(np.isfinite(log32))
    assert np.abs(u32 - u64).max() <= 1e-4
    gemm = 0.0
    if s.D >= engine.GEMM_MIN_D:
        dl, v_max = gemm_error_scales(s, P, np.finfo(np.float32).eps)
        gemm = 2 * dl * (1 + 2 * v_max)
    assert np.all(np.abs(log32 - log64) <= 1e-4 * np.maximum(1, np.abs(log64)) + gemm)
