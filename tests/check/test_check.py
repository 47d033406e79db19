"""``physfield check`` and the quantities of :mod:`physfield.checks`.

The quantity functions are checked against fields with known answers (a Gaussian's flux, a
point charge's flux, the divergence of a linear field); the command is checked on the real
fields (every claimed property holds) and on deliberately broken ones (exactly the property
each one breaks fails, with a non-zero exit).
"""

import functools
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
from scipy.special import gammaln
from scipy.stats import multivariate_normal

import cli
import physfield
from physfield import checks, data
from physfield import report as property_report

ROWS = {"lines_arrived", "lines_flux", "lines_reversed", "lines_leaked", "plane_flux", "transport", "transport_pair",
        "divergence", "min_ez", "ez_negative", "max_outside", "gauss", "backward_flux", "leakage", "superposition",
        "pairing"}


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


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_plane_flux_of_a_gaussian_from_its_own_lines(dim):
    """The importance sample from crossings drawn from the density itself integrates it (5 s.e.),
    with a standard error that shrinks as it should, in log space at large magnitudes too."""
    rng = np.random.default_rng(dim)
    mean, std = rng.normal(size=dim), 0.3
    for mass in (1.0, 2.5, 1e-200):
        X = mean + std * rng.standard_normal((400, dim))
        y, w, se = checks.plane_flux(gaussian_field(mean, std, mass), 1.0, X, rng)
        assert 0 < se < 0.05 * mass and abs(w.sum() - mass) < 5 * se


def test_kde_proposal_is_a_density():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 1))
    grid = np.linspace(-30, 30, 200001)[:, None]
    q = np.exp(checks.kde_logpdf(grid, X, 0.4))
    # float32 exponentials (kde_logpdf's docstring): 1 to about 1e-8 (measured 3e-9)
    assert np.sum(q) * (grid[1, 0] - grid[0, 0]) == pytest.approx(1.0, rel=3e-8)
    y = checks.kde_sample(rng, 200000, X, 0.4)
    assert np.mean(y) == pytest.approx(X.mean(), abs=0.02)


@pytest.mark.parametrize("width, far", [(0.3, False), (0.25, True), (0.3 * 1.15, True)])
def test_transport_scores_tell_a_wrong_width(width, far):
    """Lines crossing with the field's own density score a few standard errors; a 15 % narrower or
    wider bundle (a wrong width profile) scores far more."""
    rng = np.random.default_rng(1)
    mean, std, n = np.zeros(2), 0.3, 2000
    X = mean + width * rng.standard_normal((n, 2))
    y, w, _ = checks.plane_flux(gaussian_field(mean, std), 1.0, X, rng)
    score = checks.transport_scores(X, np.ones(n, int), np.arange(n), n, y, w, mean)
    assert (score > 8) if far else (score < 4)


def test_transport_scores_count_backward_crossings_against():
    """A line crossing forwards, back and forwards counts once; one that only crosses back counts -1."""
    rng = np.random.default_rng(2)
    n = 3000
    X = 0.3 * rng.standard_normal((n, 1))
    y, w, _ = checks.plane_flux(gaussian_field(np.zeros(1), 0.3), 1.0, X, rng)
    twice = np.concatenate([X, X[:500], X[:500]])
    signs = np.concatenate([np.ones(n), -np.ones(500), np.ones(500)]).astype(int)
    lines = np.concatenate([np.arange(n), np.arange(500), np.arange(500)])
    assert checks.transport_scores(twice, signs, lines, n, y, w, np.zeros(1)) < 4
    back = np.concatenate([np.ones(n - 300), -np.ones(300)]).astype(int)
    assert checks.transport_scores(X, back, np.arange(n), n, y, w, np.zeros(1)) > 8


def test_local_scale_of_a_gaussian():
    """``l = 1 / max(|grad log|E||, sqrt|curvature|)``: sigma at the centre of a Gaussian, sigma^2/|x|
    far out."""
    std = 0.2
    P = np.array([[1.0, 0.0], [1.0, 1.0]])
    scale = checks.local_scale(gaussian_field(np.zeros(1), std), P, 1e-6, 100.0)
    assert scale == pytest.approx([std, std**2 / 1.0], rel=1e-4)


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


def test_check_follows_its_lines_with_the_stepper_asked(monkeypatch):
    """``--method``/``--rtol`` reach every line the check follows (its lines, the single pair's, the
    pairing configuration's): the adaptive default and fixed RK4 both pass the line checks of the
    strong field, the rows say which stepper and how many evaluations, and the default takes fewer
    evaluations (the README's figures: 226 against 328 at n = 256)."""
    asked = []

    def spy(*args, **options):
        asked.append((options["method"], options["rtol"]))
        return follow(*args, **options)

    follow = property_report.follow
    monkeypatch.setattr(property_report, "follow", spy)
    evaluations = {}
    for args in ([], ["--method", "rk4"], ["--rtol", "1e-3"]):
        asked.clear()
        result = run("--field", "strong", "--n", "64", "--only", "lines_arrived,transport_pair,pairing", "--json",
                     *args)
        assert result.exit_code == 0, result.output
        out = report(result)
        how = {r["name"]: r for r in out["checks"]}["lines_arrived"]["method"]
        method = args[1] if args and args[0] == "--method" else "bs32"
        rtol = float(args[1]) if args and args[0] == "--rtol" else 1e-4
        assert asked == [(method, rtol)] * 3
        assert out["config"]["method"] == method and f"{method}" in how
        evaluations[" ".join(args)] = int(how.split(" evaluations")[0].split()[-1])
    assert evaluations["--rtol 1e-3"] < evaluations[""] < evaluations["--method rk4"], evaluations

def test_check_strong_default_passes_everything():
    result = run("--field", "strong", "--json")
    assert result.exit_code == 0, result.output
    out = report(result)
    rows = {r["name"]: r for r in out["checks"]}
    assert set(rows) == ROWS and out["passed"]
    assert all(r["status"] == "pass" for r in rows.values())
    assert {r["property"] for r in rows.values()} == set(physfield.fields.CLAIMS)
    assert all({"name", "property", "value", "threshold", "claim", "status", "method"} <= set(r) for r in rows.values())
    assert out["field"] == {"kind": "strong", "L": 6.0, "sigma0": 1.0, "d": 3.0}  # d = L/2 by default
    assert out["config"] | {"backend": None} == {"source": "gaussian", "target": "8gaussians", "dim": 2, "n": 256,
                                                 "plan": "paired", "seed": 0, "backend": None, "method": "bs32",
                                                 "rtol": 1e-4}
    assert rows["lines_arrived"]["value"] == 0 and rows["lines_flux"]["value"] == 0
    assert len(rows["plane_flux"]["planes"]) == len(property_report.PLANES)
    assert rows["min_ez"]["value"] > 0 and rows["ez_negative"]["value"] == 0
    assert rows["max_outside"]["value"] == 0 and rows["divergence"]["value"] == 0
    assert rows["gauss"]["value"] < 1e-8 and rows["superposition"]["value"] < 1e-12


def test_check_coulomb_claims_hold_and_reversal_is_measured():
    out = report(run("--field", "coulomb", "--n", "64", "--json"))
    rows = {r["name"]: r for r in out["checks"]}
    assert set(rows) == ROWS and out["passed"]
    claimed = {"gauss", "divergence", "superposition"}
    assert {rows[name]["status"] for name in claimed} == {"pass"}
    assert rows["gauss"]["value"] < 1e-10
    assert {rows[name]["status"] for name in ROWS - claimed - {"transport", "transport_pair"}} == {"measured"}
    assert rows["transport"]["status"] == "n/a" and "not applicable" in rows["transport"]["method"]
    # half of each point charge's flux leaves into z < 0 (less a little: the sinks pull it up)
    assert 0.4 < rows["backward_flux"]["value"] < 0.5 and 0.4 < rows["leakage"]["value"] < 0.5
    assert rows["lines_reversed"]["value"] > 0.3 and rows["lines_leaked"]["value"] > 0
    assert rows["max_outside"]["value"] > 0  # the Coulomb field leaks out of the gap


def test_check_in_higher_dimension_says_what_it_cannot_measure():
    result = run("--field", "strong", "--source", "gaussian", "--target", "gaussian", "--dim", "40", "--n", "32")
    assert result.exit_code == 0, result.output
    assert "Monte Carlo" in result.stdout and "all 14 claimed properties hold" in result.stdout
    assert result.stdout.count("not applicable in D = 40") == 2 and "one pair in D = 3" in result.stdout


def test_table_is_aligned():
    result = run("--field", "coulomb", "--n", "16", "--plan", "optimal")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("check"))
    table = lines[start:start + 1 + len(ROWS)]
    column = table[0].index("status")
    assert all(line[column:].split()[0] in {"status", "pass", "measured", "n/a"} for line in table)
    assert lines[-1].startswith("all 3 claimed properties hold")


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


class WrongProfile(physfield.StrongField):
    """The strong field with k = pi / 3d in the end regions: the width jumps at z = d and L - d,
    a divergence concentrated on two planes, which random probes miss."""

    def profile(self, z):
        k = np.pi / (3 * self.d)
        left, right = z < self.d, z > self.L - self.d
        end = np.where(left, z, np.where(right, self.L - z, self.d))
        ends = left | right
        sign = np.where(left, 1.0, np.where(right, -1.0, 0.0))
        return np.where(ends, self.sigma0 * np.sin(k * end), self.sigma0), sign * self.sigma0 * k * np.cos(k * end)


class FlippedS(physfield.StrongField):
    """The sign of s = sigma'/sigma flipped: strings widen where they should narrow."""

    def profile(self, z):
        sigma, dsigma = super().profile(z)
        return sigma, -dsigma


class UniformWeights(physfield.StrongField):
    """The plan's weights replaced by uniform ones over its support."""

    def bind(self, *args, **kwargs):
        bound = super().bind(*args, **kwargs)
        bound.logw = np.full_like(bound.logw, -np.log(len(bound.logw)))
        return bound


class Blurred(physfield.GaussianPathField):
    """Flow matching with sigma_min > 0: a Gaussian path whose width does not vanish at the plates."""

    def __init__(self, L=6.0):
        super().__init__(L)

    def profile(self, z):
        w = np.pi / self.L
        return 0.3 + 0.7 * np.sin(w * z), 0.7 * w * np.cos(w * z)


BROKEN_STEPS = 400  # steps a line may take in the broken-field tests


@pytest.mark.parametrize("field, failing", [
    (broken(physfield.StrongField, stronger)(L=6.0), {"gauss"}),
    (broken(physfield.StrongField, leaking)(L=6.0), {"max_outside"}),
    (broken(physfield.StrongField, sheared)(L=6.0), {"divergence"}),
    (broken(physfield.StrongField, reversing)(L=6.0), {"min_ez", "ez_negative"}),
    # d = 0.5: end regions shorter than the middle, where a wrong k makes the width jump
    (WrongProfile(L=6.0, d=0.5), {"transport_pair"}),
    (FlippedS(L=6.0, d=0.5), {"lines_arrived", "divergence"}),
    (UniformWeights(L=6.0), {"superposition", "pairing"}),
    (Blurred(L=6.0), {"lines_arrived", "gauss", "pairing"}),
    (broken(physfield.CoulombField, stronger)(L=6.0), {"gauss"}),
    (broken(physfield.CoulombField, sheared)(L=6.0), {"divergence"}),
], ids=["stronger", "leaking", "sheared", "reversing", "wrong-profile", "flipped-s", "uniform-weights", "blurred",
        "coulomb-stronger", "coulomb-sheared"])
def test_broken_field_fails_its_property(field, failing):
    """Each deliberately broken field fails the checks of the property it breaks, and the exact
    field on the same data, measured the same way, passes every check.

    Lines are capped at ``BROKEN_STEPS`` steps (the exact field's lines arrive well within it; a
    broken field's wander for all 4000 steps otherwise) and only the checks named are measured
    (a broken field's plane flux draws importance samples up to its cap)."""
    A, B = data.sample("gaussian", 48, seed=1), data.sample("8gaussians", 48, seed=2)
    rows, _ = property_report.measure(field, A, B, "paired", "auto", 0, max_steps=BROKEN_STEPS, only=failing)
    assert {r["name"]: r["status"] for r in rows} == dict.fromkeys(failing, "fail")
    if isinstance(field, Blurred):  # no line ends on the plan: p = 0, not the chi-square's 1 of empty counts
        (pairing,) = [r for r in rows if r["name"] == "pairing"]
        assert pairing["counts"] == [0] * 5 and pairing["value"] == 0
    if isinstance(field, (WrongProfile, FlippedS, UniformWeights)):
        assert exact_failures(type(field).__mro__[1], field.d) == set()


@functools.cache
def exact_failures(kind, d):
    """The checks the exact field ``kind(L=6, d=d)`` fails on the broken-field tests' data (every
    check measured, lines capped as theirs)."""
    A, B = data.sample("gaussian", 48, seed=1), data.sample("8gaussians", 48, seed=2)
    rows, _ = property_report.measure(kind(L=6.0, d=d), A, B, "paired", "auto", 0, max_steps=BROKEN_STEPS)
    assert {r["name"] for r in rows} == ROWS
    return {r["name"] for r in rows if r["status"] == "fail"}


def test_failing_property_exits_non_zero(monkeypatch):
    monkeypatch.setitem(physfield.fields.REGISTRY, "strong", broken(physfield.StrongField, leaking))
    result = run("--field", "strong", "--n", "16", "--only", "lines_leaked,max_outside,superposition")
    assert result.exit_code == 1
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("FAILED:") and "lines_leaked" in verdict and "max_outside" in verdict
    assert "superposition" not in verdict
    result = run("--field", "strong", "--n", "16", "--only", "max_outside", "--json")
    assert result.exit_code == 1 and report(result)["passed"] is False
    assert [r["name"] for r in report(result)["checks"]] == ["max_outside"]


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
    (["--field", "strong", "--plan", "greedy"],
     "unknown plan 'greedy'; expected one of independent, optimal, paired, sinkhorn or module:function"),
    (["--field", "strong", "--plan", "physfield.plans:SUM_TOL"], "is not a function f(sources, sinks)"),
    (["--field", "strong", "--plan", "nosuchmodule:plan"], "cannot import 'nosuchmodule'"),
    (["--field", "strong", "--target", "spiral"], "unknown data source 'spiral'"),
    (["--field", "strong", "--source", "missing.npy"], "data file not found: missing.npy"),
    (["--field", "strong", "--dim", "3"], "'8gaussians' is 2-dimensional"),
    (["--field", "coulomb", "--d", "1"], "field coulomb takes no parameter 'd' (its parameters: L)"),
    (["--field", "strong", "--only", "gauss,flux"], "unknown check 'flux'; the checks: lines_arrived"),
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


@pytest.mark.slow
def test_installed_command_runs_and_is_reproducible():
    """The console script as installed, in fresh processes: the same numbers twice, and the
    numbers of an in-process run (seeded) to round-off: kernels Numba compiled in this process
    may differ in the last bit of a few sums from the cached build the fresh processes load
    (fast-math reductions, ``physfield.kernels.simd``)."""
    exe = shutil.which("physfield") or str(Path(sys.executable).parent / "physfield")
    outs = []
    for _ in range(2):
        done = subprocess.run([exe, "check", "--field", "strong", "--n", "64", "--json"], capture_output=True, text=True,
                              check=False, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        outs.append([r["value"] for r in json.loads(done.stdout)["checks"]])
    assert outs[0] == outs[1]
    again = [r["value"] for r in report(run("--field", "strong", "--n", "64", "--json"))["checks"]]
    assert len(again) == len(outs[0])
    for a, b in zip(outs[0], again):
        assert a == b or (isinstance(a, float) and b == pytest.approx(a, rel=1e-9, abs=1e-12)), (a, b)


@pytest.mark.parametrize("seed", [4, 11])
def test_divergence_probes_never_straddle_the_profile_kinks(seed):
    """sigma'' jumps at z = d and L - d, where a central difference is not O(h^2): the probes
    keep their stencils on one side (seed 4 put one at z = 5.50001 before)."""
    A = data.sample("gaussian", 128, seed=0)
    B = data.sample("8gaussians", 128, seed=1)
    rows, _ = property_report.measure(physfield.StrongField(6, 1, 0.5), A, B, "paired", "numba", seed,
                                      only=["divergence"])
    (div,) = rows
    assert div["status"] == "pass" and div["value"] < property_report.DIV_TOL
