"""Field lines: the strong field's lines arrive at the sinks, each at its own when the pairs are
apart; the Coulomb field's lines reverse and leak as Gauss's law says they must; and the trace's
statistics move when the field is broken (they are measured from lines free to turn back or pass
z = L, not given by how the lines are stepped)."""

import numpy as np
import pytest

import physfield as pf
from physfield.metrics import w2

DATA_PAIRS = [("gaussian", "8gaussians"), ("moons", "circles"), ("checkerboard", "swissroll")]


@pytest.mark.parametrize("plan", ["paired", "independent", "optimal", "sinkhorn"])
@pytest.mark.parametrize("source,target", DATA_PAIRS)
def test_strong_lines_arrive_never_reverse_or_leak(plan, source, target):
    A = pf.data.sample(source, 24, seed=1)
    B = pf.data.sample(target, 24, seed=2)
    res = pf.trace(pf.StrongField(L=6, sigma0=1, d=0.5), A, B, plan=plan, n_lines=48, seed=3)
    s = res.stats
    assert (s["arrived"], s["reversed"], s["leaked"], s["lost"], s["turned"]) == (1.0, 0.0, 0.0, 0.0, 0.0)
    assert s["flux_error"] == 0.0 and s["straightness"] >= 1
    assert res.endpoints.shape == (48, 3)
    ends = np.column_stack([np.full(len(B), 6.0), B])
    assert np.all(np.linalg.norm(res.endpoints[:, None] - ends[None], axis=2).min(axis=1) <= s["r0"] * (1 + 1e-9))


def test_paired_lines_end_at_their_own_sink():
    """Well-separated pairs: each string carries its own flux, so a line started at source k ends
    at sink k; the middle of the lines is straight."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 2)) * 0.3 + np.arange(6)[:, None] * 12.0
    B = A + np.array([3.0, -2.0])  # parallel strings, 12 apart at every z
    res = pf.trace(pf.StrongField(L=6, sigma0=0.5, d=1.0), A, B, plan="paired", n_lines=60, seed=1)
    sink = np.argmin(np.linalg.norm(res.endpoints[:, None, 1:] - B[None], axis=2), axis=1)
    assert res.stats["arrived"] == 1 and np.array_equal(sink, res.source)
    assert res.stats["evaluations"] >= 4 * int(res.lines.steps.max())  # RK4: 4 a step of the longest line


def test_strong_endpoints_are_the_sinks():
    A = pf.data.sample("gaussian", 64, seed=0)
    B = pf.data.sample("8gaussians", 64, seed=1)
    s = pf.trace(pf.StrongField(L=6, sigma0=1, d=0.5), A, B, plan="optimal", n_lines=256, seed=2).stats
    assert s["w2"] < 0.3 * w2(A, B)


class FlippedS(pf.StrongField):
    """The sign of s = sigma'/sigma flipped: strings widen toward the sinks instead of closing."""

    def profile(self, z):
        sigma, dsigma = super().profile(z)
        return sigma, -dsigma


def test_a_wrong_strong_field_does_not_arrive():
    """With s of the wrong sign the lines do not end at the sinks: arrived < 1 (the trace is not
    arrived = 1 by construction). 400 steps: every exact line arrives within them (the wrong
    lines wander for all 4000 of the default)."""
    A = pf.data.sample("gaussian", 24, seed=1)
    B = pf.data.sample("8gaussians", 24, seed=2)
    assert pf.trace(pf.StrongField(L=6, sigma0=1, d=0.5), A, B, n_lines=48, seed=3, max_steps=400).stats["arrived"] == 1
    s = pf.trace(FlippedS(L=6, sigma0=1, d=0.5), A, B, n_lines=48, seed=3, max_steps=400).stats
    assert s["arrived"] < 0.5


def test_coulomb_reverses_and_leaks_on_default_data():
    A = pf.data.sample("gaussian", 48, seed=0)
    B = pf.data.sample("8gaussians", 48, seed=1)
    s = pf.trace(pf.CoulombField(L=6), A, B, n_lines=200, seed=0).stats
    assert s["reversed"] > 0.3
    assert s["leaked"] > 0.0
    assert s["lost"] <= 0.05
    assert s["flux_error"] > 0.3  # reversed flux never crosses the planes between the plates


class Forward(pf.CoulombField):
    """The Coulomb field with E_z forced >= 0: no line can go back behind P."""

    def bind(self, *args, **kwargs):
        bound = super().bind(*args, **kwargs)
        exact = bound.direction

        def direction(points, return_ess=False):
            u, log_norm = exact(points)
            u = u.copy()
            u[:, 0] = np.abs(u[:, 0])
            return u, log_norm

        bound.direction = direction
        return bound


def test_coulomb_reversal_is_where_lines_go_not_where_they_start():
    """Half of a lone charge's flux leaves backwards: reversed = 1/2 within binomial error. With
    E_z forced >= 0 the same starts (half of them below z = 0) give no reversed line."""
    A = np.zeros((1, 2))
    B = np.zeros((1, 2))
    n = 400
    exact = pf.trace(pf.CoulombField(L=50.0), A, B, n_lines=n, seed=4, max_steps=300)
    assert abs(exact.stats["reversed"] - 0.5) < 3 * np.sqrt(0.25 / n)
    assert abs(np.mean(exact.starts[:, 0] < 0) - 0.5) < 3 * np.sqrt(0.25 / n)
    forced = pf.trace(Forward(L=50.0), A, B, n_lines=n, seed=4, max_steps=300)
    assert forced.stats["reversed"] == 0 and forced.stats["turned"] == 0
    assert np.any(forced.starts[:, 0] < 0)  # starts behind the plate, none of them counted


def test_trace_rejects_bad_input():
    A = np.zeros((3, 2))
    with pytest.raises(ValueError, match="n_lines"):
        pf.trace(pf.StrongField(), A, A, n_lines=0)
    with pytest.raises(ValueError, match="r0"):
        pf.trace(pf.StrongField(L=6), A, A, r0=-1.0)
    with pytest.raises(ValueError, match="sinks"):
        pf.trace(pf.StrongField(), A, np.zeros((3, 3)))
