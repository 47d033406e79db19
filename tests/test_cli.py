"""``physfield check`` and the quantities of :mod:`physfield.checks`.

The quantity functions are checked against fields with known answers (a Gaussian's flux, a
point charge's flux, the divergence of a linear field); the command is checked on the real
fields (every claimed property holds) and on deliberately broken ones (exactly the property
each one breaks fails, with a non-zero exit).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import gammaln, logsumexp
from scipy.stats import multivariate_normal

import cli
import physfield
from physfield import checks, data
from physfield import report as property_report

STRONG = {"flux", "min_ez", "ez_negative", "max_outside", "divergence"}
COULOMB = {"gauss", "divergence", "backward_flux", "leakage", "min_ez", "ez_negative", "max_outside"}


def run(*args):
    return CliRunner().invoke(cli.physfield, ["check", *args])


def report(result):
    return json.loads(result.stdout)


# --- the quantity functions against known answers ------------------------------------------


def gaussian_field(mean, std, mass=1.0):
    """A field along +z whose E_z on every plane is ``mass N(x; mean, std^2 I)``."""

    def direction(P):
        u = np.zeros_like(P)
        u[:, 0] = 1
        log_norm = np.log(mass) + multivariate_normal(mean, std**2).logpdf(P[:, 1:]).reshape(-1)
        return u, log_norm

    return direction


def point_charge(centre):
    """The unit point charge ``G(p - centre)`` of ``R^{D+1}``, direction and ``log|G|``."""

    def direction(P):
        r = P - centre
        dist = np.linalg.norm(r, axis=1)
        dim = P.shape[1] - 1
        log_area = np.log(2) + (dim + 1) / 2 * np.log(np.pi) - gammaln((dim + 1) / 2)
        return r / dist[:, None], -log_area - dim * np.log(dist)

    return direction


@pytest.mark.parametrize("dim", [1, 2])
def test_lattice_quadrature_integrates_a_gaussian(dim):
    rng = np.random.default_rng(dim)
    mean, std = rng.normal(size=dim), 0.3
    for mass in (1.0, 2.5):
        flux = checks.flux_quadrature(gaussian_field(mean, std, mass), 1.0, mean, 8 * std, std / 1.5)
        assert flux == pytest.approx(mass, rel=1e-12)


def test_lattice_union_of_cubes_matches_the_box():
    """Far-apart narrow centres use the union of their cubes: same lattice nodes near the data."""
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    nodes, cell = checks.lattice(centres, 1.0, 0.25)
    assert cell == 0.0625 and len(nodes) < 3 * 11**2  # not the 200^2 nodes of the box
    box, _ = checks.lattice(centres[:1], 1.0, 0.25)
    near = nodes[np.abs(nodes).max(axis=1) <= 1.0]
    assert len(near) == len(box[np.abs(box).max(axis=1) <= 1.0]) == 9**2


def test_lattice_refuses_an_impossible_grid():
    with pytest.raises(ValueError, match="lattice nodes"):
        checks.lattice(np.array([[0.0, 0.0], [1e3, 1e3]]), 1.0, 1e-3)


@pytest.mark.parametrize("dim", [3, 30, 3000])
def test_importance_sampling_flux_of_a_gaussian(dim):
    """E underflows at D = 3000; the ratio E_z/q is formed in log space."""
    rng = np.random.default_rng(dim)
    A, B = rng.normal(size=(3, dim)), rng.normal(size=(3, dim))
    I, J, logw = np.arange(3), np.arange(3), np.log(np.full(3, 1 / 3))
    t, sigma = 0.3, 0.5

    def strong_like(P):  # the field of the three pairs' strings on the plane z: sum_k pi_k N(c_k, sigma^2)
        u = np.zeros_like(P)
        u[:, 0] = 1
        return u, checks.pair_mixture_logpdf(P[:, 1:], A, B, I, J, logw, t, sigma)

    tau = 1 + 0.25 / np.sqrt(dim)
    x = checks.pair_mixture_sample(rng, 4000, A, B, I, J, logw, t, tau * sigma)
    flux, se = checks.flux_importance(strong_like, t, x, checks.pair_mixture_logpdf(x, A, B, I, J, logw, t, tau * sigma))
    assert 0 < se < 0.02
    assert abs(flux - 1) < 5 * se


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.floats(0, 1), st.floats(0.1, 3),
       st.integers(0, 2**16))
def test_pair_mixture_logpdf_is_the_mixture(N, M, dim, t, scale, seed):
    rng = np.random.default_rng(seed)
    A, B, X = rng.normal(size=(N, dim)), 3 + rng.normal(size=(M, dim)), 2 * rng.normal(size=(6, dim))
    I, J = np.repeat(np.arange(N), M), np.tile(np.arange(M), N)
    logw = np.log(rng.dirichlet(np.ones(N * M)))
    centres = (1 - t) * A[I] + t * B[J]
    direct = logsumexp([lw + multivariate_normal(c, scale**2).logpdf(X) for lw, c in zip(logw, centres)], axis=0)
    assert np.allclose(checks.pair_mixture_logpdf(X, A, B, I, J, logw, t, scale), direct, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_sphere_quadrature_moments(dim):
    """Mean of n_z^2 over the sphere is 1/(D+1); the flux of the unit field (0, ..) -> -e_z through the
    lower half-sphere is the volume of the unit D-ball (1/pi of |S^1| for D=1, 1/4 of |S^2| for D=2)."""
    n, w, mc = checks.sphere_rule(dim, "full")
    assert not mc and np.allclose(np.linalg.norm(n, axis=1), 1)
    assert w.sum() == pytest.approx(1) and w @ n[:, 0] ** 2 == pytest.approx(1 / (dim + 1), rel=1e-13)
    for part, sign in (("lower", -1), ("upper", 1)):
        n, w, _ = checks.sphere_rule(dim, part)
        assert np.all(sign * n[:, 0] > 0) and w.sum() == pytest.approx(0.5)
        assert w @ (sign * n[:, 0]) == pytest.approx({1: 1 / np.pi, 2: 1 / 4}[dim], rel=1e-13)


@given(st.integers(1, 60), st.floats(1e-3, 10), st.integers(0, 2**16))
def test_point_charge_flux_through_its_spheres(dim, r, seed):
    """Gauss: flux 1 through any sphere around a unit charge, 1/2 through each half; log space
    keeps it finite for every radius and D."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim + 1)
    field = point_charge(centre)
    for part, share in (("full", 1.0), ("lower", 0.5), ("upper", 0.5)):
        flux, se = checks.surface_flux(field, centre, r, checks.sphere_rule(dim, part, rng=rng, draws=64))
        assert flux == pytest.approx(share, rel=1e-12) and se < 1e-12


@given(st.integers(1, 6), st.booleans(), st.integers(0, 2**16))
def test_divergence_residual_of_linear_fields(dim, solenoidal, seed):
    """E(p) = K p + c: central differences are exact, the residual is |tr K| scale / |E(p)|."""
    rng = np.random.default_rng(seed)
    K, c = rng.normal(size=(dim + 1, dim + 1)), 5 * rng.normal(size=dim + 1)
    if solenoidal:
        K -= np.trace(K) / (dim + 1) * np.eye(dim + 1)

    def direction(P):
        E = P @ K.T + c
        norm = np.linalg.norm(E, axis=1)
        return E / norm[:, None], np.log(norm)

    P = rng.normal(size=(5, dim + 1))
    scale = rng.uniform(0.5, 2, 5)
    expected = abs(np.trace(K)) * scale / np.linalg.norm(P @ K.T + c, axis=1)
    residual = checks.divergence_residual(direction, P, 1e-4 * scale, scale)
    assert np.allclose(residual, expected, rtol=1e-6, atol=1e-8)


def test_probe_points_lie_where_they_claim():
    rng = np.random.default_rng(0)
    lo, hi = np.array([-1.0, -2.0]), np.array([1.0, 2.0])
    inside = checks.probes_inside(rng, 2000, 6.0, lo, hi)
    outside = checks.probes_outside(rng, 2000, 6.0, lo, hi)
    assert np.all((inside[:, 0] > 0) & (inside[:, 0] < 6)) and np.mean(np.minimum(inside[:, 0], 6 - inside[:, 0]) < 0.06) > 0.2
    assert np.all((outside[:, 0] <= 0) | (outside[:, 0] >= 6)) and np.any(outside[:, 0] == 0) and np.any(outside[:, 0] == 6)
    for P in (inside, outside):
        assert np.all((P[:, 1:] >= lo) & (P[:, 1:] <= hi))


# --- the command on the real fields --------------------------------------------------------------


def test_check_strong_default_passes_everything():
    result = run("--field", "strong", "--json")
    assert result.exit_code == 0, result.output
    out = report(result)
    rows = {r["name"]: r for r in out["checks"]}
    assert set(rows) == STRONG and out["passed"]
    assert all(r["status"] == "pass" for r in rows.values())
    assert out["field"] == {"kind": "strong", "L": 6.0, "sigma0": 1.0, "d": 0.5}
    assert out["config"] | {"backend": None} == {"source": "gaussian", "target": "8gaussians", "dim": 2, "n": 256,
                                                 "plan": "paired", "seed": 0, "backend": None}
    assert rows["flux"]["value"] < 1e-10 and len(rows["flux"]["planes"]) == len(property_report.PLANES)
    assert rows["min_ez"]["value"] > 0 and rows["ez_negative"]["value"] == 0
    assert rows["max_outside"]["value"] == 0 and rows["divergence"]["value"] < property_report.DIV_TOL


def test_check_coulomb_gauss_holds_and_reversal_is_measured():
    out = report(run("--field", "coulomb", "--n", "64", "--json"))
    rows = {r["name"]: r for r in out["checks"]}
    assert set(rows) == COULOMB and out["passed"]
    assert rows["gauss"]["status"] == rows["divergence"]["status"] == "pass"
    assert rows["gauss"]["value"] < 1e-10
    measured = COULOMB - {"gauss", "divergence"}
    assert {rows[name]["status"] for name in measured} == {"measured"}
    # half of each point charge's flux leaves into z < 0 (less a little: the sinks pull it up)
    assert 0.4 < rows["backward_flux"]["value"] < 0.5 and 0.4 < rows["leakage"]["value"] < 0.5
    assert rows["max_outside"]["value"] > 0  # the Coulomb field leaks out of the gap


def test_check_in_higher_dimension_uses_importance_sampling():
    result = run("--field", "strong", "--source", "gaussian", "--target", "gaussian", "--dim", "40", "--n", "32")
    assert result.exit_code == 0, result.output
    assert "importance sampling" in result.stdout and "all 5 claimed properties hold" in result.stdout


def test_table_is_aligned():
    result = run("--field", "coulomb", "--n", "16", "--plan", "optimal")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("property"))
    table = lines[start:start + 1 + len(COULOMB)]
    column = table[0].index("status")
    assert all(line[column:].split()[0] in {"status", "pass", "measured"} for line in table)
    assert lines[-1].startswith("all 2 claimed properties hold")


# --- broken fields: each check catches its own defect ---------------------------------------------


def stronger(direction, P, L):
    """|E| 0.1 % too large everywhere: the flux through a plane (the charge of a sphere) is 1.001."""
    u, log_norm = direction(P)
    return u, log_norm + np.log(1.001)


def leaking(direction, P, L):
    """Outside the plates, the field of the nearest point between them: E != 0 for z <= 0, z >= L."""
    return direction(np.column_stack([np.clip(P[:, 0], 1e-3 * L, (1 - 1e-3) * L), P[:, 1:]]))


def sheared(direction, P, L):
    """E_x 1 % too large: E_z and every flux through a plane unchanged, but div E != 0."""
    u, log_norm = direction(P)
    v = u.astype(np.float64) * np.r_[1.0, np.full(P.shape[1] - 1, 1.01)]
    norm = np.linalg.norm(v, axis=1)
    norm[norm == 0] = 1
    return v / norm[:, None], log_norm + np.log(norm)


def reversing(direction, P, L):
    """E_z < 0 beyond x_1 = 6, a region the probe points reach."""
    u, log_norm = direction(P)
    u = u.copy()
    u[P[:, 1] > 6, 0] *= -1
    return u, log_norm


def broken(base, change):
    """``base`` with ``change`` applied to every direction it gives (``direction`` and ``bind``
    alike: ``direction`` goes through ``bind``)."""
    class Broken(base):
        def bind(self, *args, **kwargs):
            bound = base.bind(self, *args, **kwargs)
            exact = bound.direction
            bound.direction = lambda points, return_ess=False: change(exact, points, self.L)
            return bound

    return Broken


@pytest.mark.parametrize("base, change, failing", [
    (physfield.StrongField, stronger, {"flux"}),
    (physfield.StrongField, leaking, {"max_outside"}),
    (physfield.StrongField, sheared, {"divergence"}),
    (physfield.StrongField, reversing, {"min_ez", "ez_negative"}),
    (physfield.CoulombField, stronger, {"gauss"}),
    (physfield.CoulombField, sheared, {"divergence", "gauss"}),
])
def test_broken_field_fails_exactly_its_property(base, change, failing):
    A, B = data.sample("gaussian", 24, seed=1), data.sample("8gaussians", 24, seed=2)
    rows, _ = property_report.measure(broken(base, change)(L=6.0), A, B, "paired", "auto", 0)
    assert {r["name"] for r in rows if r["status"] == "fail"} >= failing
    if change is not reversing:  # the others break exactly one thing
        assert {r["name"] for r in rows if r["status"] == "fail"} == failing


def test_failing_property_exits_non_zero(monkeypatch):
    monkeypatch.setitem(physfield.fields.REGISTRY, "strong", broken(physfield.StrongField, leaking))
    result = run("--field", "strong", "--n", "16")
    assert result.exit_code == 1
    assert "FAILED: max_outside (1 of 5 claimed properties)" in result.stdout
    result = run("--field", "strong", "--n", "16", "--json")
    assert result.exit_code == 1 and report(result)["passed"] is False


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--field", "magnetic"], "unknown field 'magnetic'; expected one of coulomb, strong or module:Class"),
    (["--field", "nosuchmodule:Field"], "cannot import 'nosuchmodule'"),
    (["--field", "physfield.plans:paired"], "is not a physfield field class"),
    (["--field", "strong", "--param", "width"], "--param takes NAME=VALUE"),
    (["--field", "strong", "--param", "width=2"], "field strong takes no parameter 'width' (its parameters: L, sigma0, d)"),
    (["--field", "strong", "--n", "0"], "--n"),
    (["--field", "strong", "--n", "many"], "--n"),
    (["--field", "strong", "--L", "-1"], "L must be a positive"),
    (["--field", "strong", "--L", "nan"], "L must be a positive"),
    (["--field", "strong", "--sigma0", "0"], "sigma0 must be a positive"),
    (["--field", "strong", "--d", "4"], "d must satisfy 0 < d <= L/2 = 3.0"),
    (["--field", "strong", "--plan", "greedy"], "'greedy' is not one of"),
    (["--field", "strong", "--target", "spiral"], "unknown data source 'spiral'"),
    (["--field", "strong", "--source", "missing.npy"], "data file not found: missing.npy"),
    (["--field", "strong", "--dim", "3"], "'8gaussians' is 2-dimensional"),
    (["--field", "coulomb", "--d", "1"], "field coulomb takes no parameter 'd' (its parameters: L)"),
])
def test_bad_input_is_one_error_line(args, message):
    result = run(*args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output
    assert result.stdout == ""


def test_learn_group_exists():
    result = CliRunner().invoke(cli.learn, ["--help"])
    assert result.exit_code == 0 and "learner" in result.output


def test_installed_command_runs_and_is_reproducible():
    """The console script as installed, in a fresh process: same numbers as in-process (seeded)."""
    exe = shutil.which("physfield") or str(Path(sys.executable).parent / "physfield")
    done = subprocess.run([exe, "check", "--field", "strong", "--json"], capture_output=True, text=True,
                          check=False, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = json.loads(done.stdout)
    again = report(run("--field", "strong", "--json"))
    assert [r["value"] for r in out["checks"]] == [r["value"] for r in again["checks"]]


@pytest.mark.parametrize("seed", [4, 11])
def test_divergence_probes_never_straddle_the_profile_kinks(seed):
    """sigma'' jumps at z = d and L - d, where a central difference is not O(h^2): the probes
    keep their stencils on one side (seed 4 put one at z = 5.50001 before)."""
    A = data.sample("gaussian", 128, seed=0)
    B = data.sample("8gaussians", 128, seed=1)
    rows, _ = property_report.measure(physfield.StrongField(6, 1, 0.5), A, B, "paired", "numba", seed)
    (div,) = [r for r in rows if r["name"] == "divergence"]
    assert div["status"] == "pass" and div["value"] < property_report.DIV_TOL
