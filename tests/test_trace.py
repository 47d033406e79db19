"""Field lines (SPEC section 4): strong lines arrive, straight, at the blurred Q; Coulomb lines
reverse and leak as Gauss's law says they must."""

import numpy as np
import pytest

import physfield as pf
from physfield.trace import w2

DATA_PAIRS = [("gaussian", "8gaussians"), ("moons", "circles"), ("checkerboard", "swissroll")]


@pytest.mark.parametrize("plan", ["paired", "independent", "optimal", "sinkhorn"])
@pytest.mark.parametrize("source,target", DATA_PAIRS)
def test_strong_lines_arrive_never_reverse_or_leak(plan, source, target):
    A = pf.data.sample(source, 24, seed=1)
    B = pf.data.sample(target, 24, seed=2)
    res = pf.trace(pf.StrongField(L=6, sigma0=1, d=0.5), A, B, plan=plan, n_lines=48, seed=3, n_steps=40)
    s = res.stats
    assert (s["arrived"], s["reversed"], s["leaked"], s["lost"]) == (1.0, 0.0, 0.0, 0.0)
    assert s["flux_error"] == 0.0
    assert res.endpoints.shape == (48, 3)
    assert np.allclose(res.endpoints[:, 0], 6 - s["eps"])


def test_paired_lines_end_at_their_own_sink():
    """Well-separated pairs: each string carries its own flux, so a line started on pair k ends
    at b_k within a few sigma(eps) (SPEC property 5 for the superposition)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 2)) * 0.3 + np.arange(6)[:, None] * 12.0
    B = A + np.array([3.0, -2.0])  # parallel strings, 12 apart at every z
    fld = pf.StrongField(L=6, sigma0=0.5, d=1.0)
    res = pf.trace(fld, A, B, plan="paired", n_lines=60, seed=1, n_steps=120, keep_paths=True)
    start_pair = np.argmin(((res.starts[:, None, 1:] - A[None]) ** 2).sum(-1), axis=1)
    dist = np.sqrt(((res.endpoints[:, 1:] - B[start_pair]) ** 2).sum(-1))
    assert np.all(dist < 5 * res.stats["sigma_eps"] + 1e-3)
    assert res.stats["straightness_mid"] == pytest.approx(1.0, abs=1e-6)


def test_strong_w2_at_the_level_of_the_blur():
    A = pf.data.sample("gaussian", 64, seed=0)
    B = pf.data.sample("8gaussians", 64, seed=1)
    s = pf.trace(pf.StrongField(L=6, sigma0=1, d=0.5), A, B, plan="optimal", n_lines=256, seed=2, n_steps=60).stats
    # an exact sample of Q blurred by sigma(eps) of the same size is the yardstick
    assert s["w2"] < 1.5 * s["w2_blur"] + 0.05
    # and far below the distance between the plates' distributions themselves
    assert s["w2"] < 0.3 * w2(A, B)


def test_coulomb_reverses_and_leaks_on_default_data():
    A = pf.data.sample("gaussian", 48, seed=0)
    B = pf.data.sample("8gaussians", 48, seed=1)
    s = pf.trace(pf.CoulombField(L=6), A, B, n_lines=200, seed=0).stats
    assert s["reversed"] > 0.3
    assert s["leaked"] > 0.0
    assert s["lost"] <= 0.05
    assert s["flux_error"] > 0.3  # reversed flux never crosses the planes between the plates


def test_isolated_source_reverses_half_its_lines():
    """A single source with its sink far away: the flux leaves the source isotropically (Gauss), so
    the back half-sphere's lines go behind P: reversed = 1/2 within binomial error."""
    A = np.zeros((1, 2))
    B = np.zeros((1, 2))
    n = 400
    s = pf.trace(pf.CoulombField(L=50.0), A, B, n_lines=n, seed=4, max_steps=200).stats
    assert abs(s["reversed"] - 0.5) < 3 * np.sqrt(0.25 / n)


def test_trace_rejects_bad_input():
    A = np.zeros((3, 2))
    with pytest.raises(ValueError, match="n_lines"):
        pf.trace(pf.StrongField(), A, A, n_lines=0)
    with pytest.raises(ValueError, match="eps"):
        pf.trace(pf.StrongField(L=6), A, A, eps=4.0)
    with pytest.raises(ValueError, match="sinks"):
        pf.trace(pf.StrongField(), A, np.zeros((3, 3)))
