"""The line follower (physfield.lines) on analytic fields whose lines are known in closed form:
the same tests on NumPy arrays and torch tensors."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from array_api_compat import device as array_device
from hypothesis import given, settings
from hypothesis import strategies as st

from physfield import lines as pl

ROOT = Path(__file__).resolve().parents[2]


class Lib:
    """Makes the arrays of one library from NumPy data and reads them back."""

    def __init__(self, name):
        self.name = name

    def __call__(self, a, dtype="float64"):
        a = np.array(a, dtype=dtype)
        return torch.from_numpy(a) if self.name == "torch" else a

    @staticmethod
    def np(x):
        return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.fixture(params=["numpy", "torch"])
def lib(request):
    return Lib(request.param)


LIBS = [Lib("numpy"), Lib("torch")]


# ---- analytic fields (array-agnostic, as a caller's black box) ----

def _like(p, vec):
    xp = array_namespace(p)
    return xp.zeros_like(p) + xp.asarray(vec, dtype=p.dtype, device=array_device(p))


def uniform(p):
    """u = (1, 0, ...): straight lines forwards."""
    return _like(p, [1.0] + [0.0] * (p.shape[1] - 1))


def backwards(p):
    return -uniform(p)


def slanted(angle):
    """u = (cos a, sin a, 0, ...): straight lines that drift in x1."""
    return lambda p: _like(p, [math.cos(angle), math.sin(angle)] + [0.0] * (p.shape[1] - 2))


def circling(X):
    """Circles about the axis (z, x1) = (0, X): up on x1 < X, over the top, back down on x1 > X."""

    def u(p):
        xp = array_namespace(p)
        f = xp.zeros_like(p)
        f[:, 0], f[:, 1] = X - p[:, 1], p[:, 0]
        return f / xp.linalg.vector_norm(f, axis=1)[:, None]

    return u


def wavy(phase):
    """u ~ (0.3 + cos(x1 + phase), 1): x1 always grows while z goes forwards, back and forwards."""

    def u(p):
        xp = array_namespace(p)
        f = xp.zeros_like(p)
        f[:, 0], f[:, 1] = 0.3 + xp.cos(p[:, 1] + phase), 1.0
        return f / xp.linalg.vector_norm(f, axis=1)[:, None]

    return u


def null_above(level, fill):
    """Uniform below z = level; no direction (0 or NaN rows) from there on."""

    def u(p):
        xp = array_namespace(p)
        return xp.where((p[:, 0] < level)[:, None], uniform(p), fill)

    return u


def radial(c):
    def u(p):
        xp = array_namespace(p)
        d = p - xp.asarray(c, dtype=p.dtype, device=array_device(p))
        return d / xp.linalg.vector_norm(d, axis=1)[:, None]

    return u


def ends(lib, L, targets, radius, R_max=1e3, behind=0.0, centre=None):
    targets = np.asarray(targets, dtype=np.float64)
    centre = np.zeros(targets.shape[1] + 1) if centre is None else centre
    return pl.Ends(L=L, targets=lib(targets), radius=radius, centre=lib(centre), R_max=R_max, behind=behind)


def status_names(res):
    return [pl.STATUS[i] for i in Lib.np(res.status)]


# ---- the module ----

def test_import_does_not_import_torch():
    code = "import sys, physfield.lines; assert 'torch' not in sys.modules, 'torch imported'"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


# ---- follow_z ----

@given(v=st.lists(st.floats(-3, 3), min_size=1, max_size=3), z0=st.floats(-2, 2), span=st.floats(-3, 3),
       steps=st.integers(1, 6), method=st.sampled_from(pl.METHODS))
def test_follow_z_constant_slope_moves_x_by_v_dz(v, z0, span, steps, method):
    for lib in LIBS:
        x0 = np.arange(2 * len(v), dtype=np.float64).reshape(2, len(v))
        vel = lib(v)
        slope = lambda z, x, vel=vel: (x * 0 + vel, x[:, 0] != x[:, 0])
        res = pl.follow_z(slope, lib(x0), z0, z0 + span, steps, method, keep=True)
        assert np.allclose(lib.np(res.x), x0 + np.array(v) * span, rtol=1e-12, atol=1e-12)
        assert lib.np(res.bad).tolist() == [0, 0]
        levels = [lib.np(q)[0, 0] for q in res.path]
        assert len(levels) == res.steps + 1 and levels[0] == z0 and levels[-1] == z0 + span
        if method in pl.FIXED:
            assert res.steps == steps and res.evaluations == steps * pl.FIXED[method]
            assert np.allclose(levels, np.linspace(z0, z0 + span, steps + 1))
        else:  # exact steps: no rejection, each step 5 times the last, the last cut at z1
            assert res.rejected == 0 and res.steps <= steps and np.all(np.diff(levels) * span >= 0)
            assert res.evaluations == 1 + res.steps * pl.PAIRS[method].evaluations


def test_follow_z_exp_and_order_of_each_method(lib):
    slope = lambda z, x: (x, x[:, 0] != x[:, 0])  # dx/dz = x: x(1) = e x(0)
    x0 = lib([[1.0], [2.0]])

    def err(method, steps):
        return np.abs(lib.np(pl.follow_z(slope, x0, 0.0, 1.0, steps, method).x) / [[1.0], [2.0]] - math.e).max()

    assert err("rk4", 200) < 1e-8
    for method, order in (("euler", 1), ("heun", 2), ("rk4", 4)):
        assert math.log2(err(method, 16) / err(method, 32)) == pytest.approx(order, abs=0.15), method


@pytest.mark.parametrize("method", pl.METHODS)
def test_follow_z_counts_bad_stages_per_line(lib, method):
    """Every evaluation of a step kept is counted once (no step is rejected here)."""
    slope = lambda z, x: (x * 0, x[:, 0] > 0)  # bad wherever x > 0 (and x never moves)
    res = pl.follow_z(slope, lib([[-1.0], [1.0], [2.0]]), 0.0, 1.0, 5, method)
    assert lib.np(res.bad).tolist() == [0, res.evaluations, res.evaluations]
    assert res.rejected == 0 and res.path is None


def rotation(z, x):
    """``dx/dz = (x_2, -x_1)``: ``x(z) = R(z) x(0)``, ``R`` the rotation by ``-z``."""
    return x[:, ::-1] * np.array([1.0, -1.0]), np.zeros(len(x), dtype=bool)


def rotated(x0, z):
    c, s = np.cos(z), np.sin(z)
    return np.column_stack([c * x0[:, 0] + s * x0[:, 1], -s * x0[:, 0] + c * x0[:, 1]])


@pytest.mark.parametrize("method", list(pl.PAIRS))
def test_adaptive_steps_reach_the_tolerance_in_fewer_evaluations_than_rk4(method):
    """Lines with a closed form (a rotation over two turns): the error of the adaptive lines
    follows ``rtol`` down, within a small factor of it, the step control rejects few steps (the
    next step sized from the error's order), and fixed RK4 needs more evaluations than dopri5 for
    the same error (bs32, of order 3, needs more than RK4 on lines this smooth)."""
    x0 = np.random.default_rng(0).normal(size=(8, 2))
    exact = rotated(x0, 4 * np.pi)
    for rtol in (1e-4, 1e-6, 1e-8):
        res = pl.follow_z(rotation, x0, 0.0, 4 * np.pi, 4, method, rtol=rtol, atol=rtol)
        err = np.abs(res.x - exact).max() / np.abs(exact).max()
        assert rtol / 1e3 < err < 30 * rtol, (rtol, err)
        assert res.rejected <= 5, (rtol, res.rejected)
        bound = err * np.abs(exact).max()
        rk4 = next(n for n in (2 ** k for k in range(3, 16))
                   if np.abs(pl.follow_z(rotation, x0, 0.0, 4 * np.pi, n, "rk4").x - exact).max() <= bound)
        if method == "dopri5":
            assert res.evaluations < 4 * rk4, (rtol, res.evaluations, 4 * rk4)


@pytest.mark.parametrize("method", list(pl.PAIRS))
def test_embedded_pairs_error_estimate_has_the_order_of_the_lower_solution(method):
    """One step from ``x`` of ``dx/dz = x``: the kept solution's local error shrinks as
    ``h^(p+1)``, the error estimate as ``h^p`` and equals the lower-order solution's error to
    leading order (a wrong coefficient of the pair breaks one of these)."""
    from physfield.lines.rk import embedded_step

    pair = pl.PAIRS[method]
    rate = lambda dz, y: y
    y = np.array([[1.0]])

    def one(h):
        new, est, _ = embedded_step(rate, y, h, pair, rate(0.0, y))
        return abs(new[0, 0] - math.exp(h)), est[0, 0], math.exp(h) - (new[0, 0] - est[0, 0])

    (e1, est1, _), (e2, est2, _) = one(0.2), one(0.1)
    assert math.log2(e1 / e2) == pytest.approx(pair.order + 1, abs=0.3)
    assert math.log2(est1 / est2) == pytest.approx(pair.order, abs=0.3)
    _, est, low = one(0.01)
    assert est == pytest.approx(low, rel=0.05)


def test_adaptive_steps_refuse_zero_tolerances_and_give_up_after_the_step_cap(monkeypatch):
    from physfield.lines import zfollow

    with pytest.raises(ValueError, match="rtol and atol"):
        pl.follow_z(rotation, np.ones((1, 2)), 0.0, 1.0, 4, "dopri5", rtol=0.0, atol=0.0)
    monkeypatch.setattr(zfollow, "MAX_ADAPTIVE_STEPS", 5)
    with pytest.raises(ValueError, match="took 5 steps"):
        pl.follow_z(rotation, np.ones((1, 2)), 0.0, 100.0, 4, "dopri5", rtol=1e-10, atol=1e-10)


def test_follow_z_keeps_dtype_and_numpy_torch_agree():
    slope = lambda z, x: (x * z + 1, x[:, 0] < 0)
    out = [pl.follow_z(slope, lib([[0.5, -1.0]], dtype), 0.0, 2.0, 7)
           for lib in LIBS for dtype in ("float32", "float64")]
    assert [str(r.x.dtype).split(".")[-1] for r in out] == ["float32", "float64"] * 2
    assert np.array_equal(Lib.np(out[1].x), Lib.np(out[3].x))
    assert np.allclose(Lib.np(out[0].x), Lib.np(out[1].x), rtol=1e-5)


# ---- follow_arc ----

@given(n=st.integers(1, 5), D=st.integers(1, 3), z0=st.floats(-0.5, 0.2), L=st.floats(1, 4),
       h=st.floats(0.05, 0.5), method=st.sampled_from(pl.METHODS), seed=st.integers(0, 99))
def test_uniform_field_lines_arrive_straight_and_cross_every_plane_once(n, D, z0, L, h, method, seed):
    """Starts below the source plate (z0 < 0) move forwards and are not reversed."""
    x = np.random.default_rng(seed).normal(size=(n, D))
    planes = [0.25 * L, 0.5 * L, 0.75 * L, 0.9 * L]
    decoys = x + 5.0
    for lib in LIBS:
        p = lib(np.column_stack([np.full(n, z0), x]))
        res = pl.follow_arc(uniform, p, ends(lib, L, np.vstack([decoys, x]), 1e-9), h, 1000, method, planes=planes)
        assert status_names(res) == ["arrived"] * n
        assert np.allclose(lib.np(res.end), np.column_stack([np.full(n, L), x]), rtol=0, atol=1e-9)
        assert np.allclose(lib.np(res.length), L - z0) and np.allclose(lib.np(res.chord), L - z0)
        assert pl.straightness(res.length, res.chord) == pytest.approx(1.0, abs=1e-12)
        assert lib.np(res.crossings).tolist() == [n] * 4
        assert not lib.np(res.turned).any()
        steps = lib.np(res.steps)
        assert np.all((steps - 1) * h < L - z0) and np.all(L - z0 <= steps * h + 1e-12)


def test_line_that_comes_within_the_radius_of_a_sink_arrives_there(lib):
    calls = []
    counted = lambda p: calls.append(1) or uniform(p)
    res = pl.follow_arc(counted, lib([[0.0, 0.0]]), ends(lib, 2.0, [[0.0]], 0.3), 0.05, 100)
    assert res.evaluations == len(calls) == 4 * int(lib.np(res.steps)[0])  # RK4, no halving
    end = lib.np(res.end)[0]
    assert status_names(res) == ["arrived"]
    assert 2.0 - 0.3 - 0.05 < end[0] <= 2.0 - 0.3 + 1e-12


@pytest.mark.parametrize("offset,outcome", [(0.005, "arrived"), (0.02, "leaked")])
def test_crossing_the_sink_plate_is_judged_at_the_crossing_point(lib, offset, outcome):
    """Big steps: no step ends near the target, only the crossing point x* = x + L tan(a) can."""
    a, L, x = 0.4, 1.0, 0.25
    star = x + L * math.tan(a)
    res = pl.follow_arc(slanted(a), lib([[0.0, x]]), ends(lib, L, [[star + offset]], 0.01), 0.7, 10)
    assert status_names(res) == [outcome]
    assert np.allclose(lib.np(res.end), [[L, star]], atol=1e-12)


@given(a=st.floats(-1.0, 1.0), n=st.integers(2, 6), L=st.floats(1, 3), h=st.floats(0.05, 0.4),
       pick=st.lists(st.booleans(), min_size=6, max_size=6))
def test_slanted_lines_leak_unless_their_crossing_is_at_a_target(a, n, L, h, pick):
    """Lines 10 apart; targets at the crossing points of the picked lines only."""
    x = 10.0 * np.arange(n)
    star = x + L * math.tan(a)
    hit = np.array(pick[:n])
    targets = star[hit][:, None] if hit.any() else np.array([[-100.0]])
    for lib in LIBS:
        res = pl.follow_arc(slanted(a), lib(np.column_stack([np.zeros(n), x])), ends(lib, L, targets, 1e-9), h, 1000)
        assert status_names(res) == ["arrived" if k else "leaked" for k in hit]
        assert np.allclose(lib.np(res.end), np.column_stack([np.full(n, L), star]), atol=1e-9)
        assert np.allclose(lib.np(res.length), L / math.cos(a))


@settings(max_examples=10)
@given(X=st.floats(-2, 2), radii=st.lists(st.floats(0.5, 2.0), min_size=1, max_size=4), D=st.integers(1, 2),
       method=st.sampled_from(["heun", "rk4"]))
def test_circling_lines_turn_back_and_are_reversed_where_they_cross_behind(X, radii, D, method):
    """Semicircles from (0, X - rho) (on the source plate: not reversed there) over the top z = rho
    down to (0, X + rho); the planes below the top are crossed forwards and back."""
    rho = np.array(radii)
    n = len(rho)
    start = np.zeros((n, D + 1))
    start[:, 1] = X - rho
    planes = [0.4, 0.45 * rho.min(), 0.95 * rho.min(), 1.05 * rho.max()]
    for lib in LIBS:
        res = pl.follow_arc(circling(X), lib(start), ends(lib, 5.0, np.zeros((1, D)), 0.1), 0.02, 1000, method,
                            keep=True, planes=planes)
        assert status_names(res) == ["reversed"] * n
        assert lib.np(res.turned).all()
        end = lib.np(res.end)
        assert np.all(end[:, 0] == 0.0) and np.allclose(end[:, 1], X + rho, rtol=0, atol=2e-4)
        assert np.allclose(lib.np(res.length), np.pi * rho, rtol=2e-4, atol=0)
        assert pl.straightness(res.length, res.chord) == pytest.approx(np.pi / 2, rel=2e-4)
        assert lib.np(res.crossings).tolist() == [0, 0, 0, 0]
        z = np.stack([lib.np(q)[:, 0] for q in res.path])
        assert pl.net_crossings(z, planes).tolist() == [0, 0, 0, 0]
        ups = [int(((z[:-1] < q) & (q <= z[1:])).sum()) for q in planes]
        assert ups == [n, n, n, 0]  # the lower planes really were crossed (forwards and back)


def test_reversed_only_by_a_backward_step_to_behind(lib):
    """Backward field: a start above the plate ends on it, a start behind it after one step; the
    same starts in a forward field arrive."""
    p = lib([[0.3, 0.0], [-0.5, 1.0]])
    back = pl.follow_arc(backwards, p, ends(lib, 2.0, [[0.0]], 0.01), 0.25, 100)
    assert status_names(back) == ["reversed", "reversed"]
    assert np.allclose(lib.np(back.end), [[0.0, 0.0], [-0.75, 1.0]])
    assert lib.np(back.steps).tolist() == [2, 1]
    fwd = pl.follow_arc(uniform, p, ends(lib, 2.0, [[0.0], [1.0]], 0.01), 0.25, 100)
    assert status_names(fwd) == ["arrived", "arrived"]


@pytest.mark.parametrize("fill", [0.0, float("nan")])
@pytest.mark.parametrize("method", pl.METHODS)
def test_no_direction_is_lost_where_the_line_was(lib, fill, method):
    """A line with no direction where it is ends lost, there; one whose later stages only lack a
    direction takes an Euler step instead (it is not lost short of the null region)."""
    res = pl.follow_arc(null_above(1.0, fill), lib([[0.0, 0.0], [0.0, 3.0]]), ends(lib, 2.0, [[0.0]], 0.01),
                        0.15, 100, method)
    end = lib.np(res.end)
    # Euler asks only at the points it reaches, 0, 0.15, ...: the step from 1.05 stalls and ends
    # the line there. Heun and RK4 see the null region at a later stage first and halve their
    # step, closing in on z = 1 until the halvings run out; their Euler fallback then steps in
    # and the next step stalls. An embedded pair halves its step likewise (one retry a step).
    assert status_names(res) == ["lost", "lost"]
    z = lib.np(res.end)[:, 0]
    if method == "euler":
        assert np.allclose(end, [[1.05, 0.0], [1.05, 3.0]]) and lib.np(res.steps).tolist() == [8, 8]
    else:
        close = 1e-6 if method in pl.FIXED else 1e-4  # a pair's halvings span its whole line, not one step
        assert np.all((z >= 1.0) & (z < 1.0 + close)) and np.all(lib.np(res.steps) > 8)
    np.testing.assert_allclose(end[:, 1], [0.0, 3.0])
    assert np.allclose(lib.np(res.length), z)


@pytest.mark.parametrize("method,turned", [("euler", False), ("heun", True), ("rk4", True), ("bs32", False),
                                           ("dopri5", False)])
def test_turned_is_seen_at_any_stage(lib, method, turned):
    """E_z < 0 only beyond z = 1.04: the step from z = 0.9 across L = 1 sees it at its last stage
    only, which Euler does not have; the line leaks (its target is elsewhere) whatever the method.
    An embedded pair sees it too, but its error estimate rejects that step, and the shorter steps
    it takes instead cross L short of 1.04: only the stages of accepted steps count."""

    def u(p):
        xp = array_namespace(p)
        return xp.where((p[:, 0] < 1.04)[:, None], uniform(p), _like(p, [-0.6, 0.8]))

    res = pl.follow_arc(u, lib([[0.0, 0.0]]), ends(lib, 1.0, [[5.0]], 0.01), 0.15, 100, method)
    assert status_names(res) == ["leaked"]
    assert lib.np(res.turned).tolist() == [turned]


def test_radial_field_escapes_and_is_lost(lib):
    c = np.array([0.5, 0.0, 0.0])
    g = np.random.default_rng(0).normal(size=(20, 3))
    start = c + 0.1 * g / np.linalg.norm(g, axis=1, keepdims=True)
    res = pl.follow_arc(radial(c), lib(start), ends(lib, 100.0, [[50.0, 50.0]], 1.0, R_max=3.0, behind=-100.0,
                                                       centre=c), 0.2, 1000)
    dist = np.linalg.norm(lib.np(res.end) - c, axis=1)
    assert status_names(res) == ["lost"] * 20
    assert np.all((3.0 < dist) & (dist <= 3.2 + 1e-9))
    assert pl.straightness(res.length, res.chord) == pytest.approx(1.0, abs=1e-9)


def test_out_of_steps_is_lost(lib):
    res = pl.follow_arc(uniform, lib([[0.0, 0.0]]), ends(lib, 2.0, [[0.0]], 0.01), 0.125, 3)
    assert status_names(res) == ["lost"]
    assert lib.np(res.steps).tolist() == [3] and np.allclose(lib.np(res.end), [[0.375, 0.0]])


@settings(max_examples=10)
@given(phase=st.floats(-3, 3), z0=st.floats(0, 0.3), n=st.integers(1, 4))
def test_wavy_lines_count_once_through_every_plane(phase, z0, n):
    """Lines that go forwards, back and forwards through planes: net one crossing per line."""
    x = 0.7 * np.arange(n)
    planes = [0.35, 0.6, 1.0, 1.4, 2.5, 4.0]
    for lib in LIBS:
        res = pl.follow_arc(wavy(phase), lib(np.column_stack([np.full(n, z0), x])),
                            ends(lib, 4.0, [[1e3]], 1.0, behind=-10.0), 0.1, 1000, keep=True, planes=planes)
        assert status_names(res) == ["leaked"] * n
        assert lib.np(res.crossings).tolist() == [n] * len(planes)
        z = np.stack([lib.np(q)[:, 0] for q in res.path])
        assert pl.net_crossings(lib(z), planes).tolist() == [n] * len(planes)


def test_wavy_line_crosses_a_plane_three_times_and_counts_once(lib):
    res = pl.follow_arc(wavy(0.0), lib([[0.0, 0.0]]), ends(lib, 4.0, [[1e3]], 1.0), 0.05, 2000, keep=True,
                        planes=[1.0])
    z = np.stack([lib.np(q)[0, 0] for q in res.path])
    assert (np.sum((z[:-1] < 1.0) & (1.0 <= z[1:])), np.sum((z[1:] < 1.0) & (1.0 <= z[:-1]))) == (2, 1)
    assert lib.np(res.crossings).tolist() == [1]
    assert lib.np(res.turned).tolist() == [True]


@given(z=st.lists(st.lists(st.floats(-2, 2), min_size=3, max_size=3), min_size=2, max_size=8),
       planes=st.lists(st.floats(-2, 2), min_size=1, max_size=4))
def test_net_crossings_telescope_to_where_lines_end_minus_where_they_start(z, planes):
    z, q = np.array(z), np.array(planes)
    expected = (z[-1][:, None] >= q).sum(0) - (z[0][:, None] >= q).sum(0)
    assert pl.net_crossings(z, planes).tolist() == expected.tolist()
    assert pl.net_crossings(torch.from_numpy(z), planes).tolist() == expected.tolist()


def test_net_crossings_on_the_plane_itself():
    """A point on the plane counts as past it: 0 -> 1.5 (+1), 1.5 -> 0.5 (-1 for 1.0; 0.5 stays
    past 0.5), 0.5 -> 2 (+1 for 1.0)."""
    z = np.array([[0.0], [1.5], [0.5], [2.0]])
    assert pl.net_crossings(z, [0.5, 1.0, 3.0]).tolist() == [1, 1, 0]


def test_per_line_step_sizes(lib):
    h = lambda p: 0.125 + 0.125 * (p[:, 1] > 0)
    res = pl.follow_arc(uniform, lib([[0.0, -1.0], [0.0, 1.0], [0.0, 2.0]]),
                        ends(lib, 1.0, [[-1.0], [1.0], [2.0]], 1e-9), h, 100)
    assert status_names(res) == ["arrived"] * 3
    assert lib.np(res.steps).tolist() == [8, 4, 4]
    with pytest.raises(ValueError, match="h\\(p\\)"):
        pl.follow_arc(uniform, lib([[0.0, 1.0]]), ends(lib, 1.0, [[0.0]], 0.1), lambda p: p[:, 1] * 0, 10)


def test_numpy_and_torch_agree_and_keep_dtype():
    start = np.array([[0.0, -1.0, 0.5], [0.0, -1.5, 0.0], [1.17, 0.0, 0.0]])
    out = {}
    for lib in LIBS:
        for dtype in ("float32", "float64"):
            res = pl.follow_arc(circling(0.0), lib(start, dtype), ends(lib, 1.2, [[0.0, 0.0]], 0.05), 0.02, 500,
                                planes=[0.5, 1.0])
            for name in ("end", "length", "chord"):
                assert str(getattr(res, name).dtype).split(".")[-1] == dtype
            out[lib.name, dtype] = res
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-4)):
        a, b = out["numpy", dtype], out["torch", dtype]
        assert np.array_equal(Lib.np(a.status), Lib.np(b.status))
        assert np.array_equal(Lib.np(a.crossings), Lib.np(b.crossings))
        assert np.allclose(Lib.np(a.end), Lib.np(b.end), atol=tol)
    assert status_names(out["numpy", "float64"]) == ["reversed", "leaked", "arrived"]


@pytest.mark.parametrize("kwargs,match", [
    ({"h": 0.0}, "h must"), ({"h": float("nan")}, "h must"), ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"), ({"max_steps": True}, "max_steps"), ({"method": "rk5"}, "method"),
])
def test_follow_arc_rejects_bad_numbers(kwargs, match):
    args = {"direction": uniform, "p": np.zeros((1, 2)), "ends": ends(Lib("numpy"), 1.0, [[0.0]], 0.1), "h": 0.1,
            "max_steps": 10} | kwargs
    with pytest.raises(ValueError, match=match) as err:
        pl.follow_arc(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs,match", [
    ({"radius": -0.1}, "radius"), ({"R_max": 0.0}, "R_max"), ({"behind": 1.0}, "behind"),
    ({"L": float("inf")}, "L must"),
])
def test_ends_reject_bad_numbers(kwargs, match):
    args = {"L": 1.0, "targets": np.zeros((1, 1)), "radius": 0.1, "centre": np.zeros(2), "R_max": 10.0} | kwargs
    with pytest.raises(ValueError, match=match):
        pl.Ends(**args)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps"), ({"steps": 1.0}, "steps"), ({"method": "midpoint"}, "method"),
    ({"z1": float("nan")}, "z1"),
])
def test_follow_z_rejects_bad_input(kwargs, match):
    args = {"slope": lambda z, x: (x, x[:, 0] < 0), "x": np.zeros((1, 1)), "z0": 0.0, "z1": 1.0, "steps": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        pl.follow_z(**args)


# ---- sphere_starts ----

def _radial_field(c, log_norm=0.0):
    def field_at(p):
        d = p - c
        return d / np.linalg.norm(d, axis=1, keepdims=True), np.full(len(p), log_norm)

    return field_at


def test_point_charge_starts_are_uniform_on_its_sphere():
    c, r, n = np.array([0.0, 1.0, -2.0]), 0.3, 4000
    s = pl.sphere_starts(_radial_field(c), c[None], [1.0], r, n, np.random.default_rng(0))
    assert not s.flagged.any()
    assert np.allclose(np.linalg.norm(s.points - c, axis=1), r)
    se = r / math.sqrt(3 * n)  # each coordinate of a uniform point on S^2 has variance r^2 / 3
    assert np.all(np.abs(s.points.mean(axis=0) - c) < 4 * se)


def test_starts_avoid_where_the_field_vanishes():
    c = np.array([0.0, 0.0, 0.0])

    def field_at(p):
        u, log_norm = _radial_field(c)(p)
        below = p[:, 0] < 0
        return np.where(below[:, None], 0.0, u), np.where(below, -np.inf, log_norm)

    s = pl.sphere_starts(field_at, c[None], [1.0], 0.5, 2000, np.random.default_rng(1), proposals=32)
    assert not s.flagged.any() and np.all(s.points[:, 0] >= 0)


@pytest.mark.parametrize("D", [2, 5])
def test_uniform_field_starts_have_density_n_z_on_the_upper_hemisphere(D):
    """u = (1, 0, ...), |E| = e^-5000 everywhere (underflows unless the maximum is taken out):
    n on S^D with density ~ max(n_z, 0), E[n_z] = (D/2) B(3/2, D/2)."""
    n = 4000
    field_at = lambda p: (uniform(p), np.full(len(p), -5000.0))
    s = pl.sphere_starts(field_at, np.zeros((1, D + 1)), [1.0], 2.0, n, np.random.default_rng(D), proposals=256)
    nz = s.points[:, 0] / 2.0
    exact = D / 2 * math.exp(math.lgamma(1.5) + math.lgamma(D / 2) - math.lgamma(D / 2 + 1.5))
    assert not s.flagged.any() and np.all(nz > 0)
    assert abs(nz.mean() - exact) < 5 * nz.std() / math.sqrt(n)


def test_centres_are_drawn_by_weight_and_dead_spheres_are_flagged():
    centres = np.array([[0.0, 0.0], [0.0, 10.0]])
    s = pl.sphere_starts(lambda p: (uniform(p), np.zeros(len(p))), centres, [1.0, 3.0], 0.5, 4000,
                         np.random.default_rng(2))
    assert abs(s.centre.mean() - 0.75) < 5 * math.sqrt(0.75 * 0.25 / 4000)
    assert np.allclose(np.linalg.norm(s.points - centres[s.centre], axis=1), 0.5)
    dead = pl.sphere_starts(lambda p: (np.zeros_like(p), np.full(len(p), -np.inf)), centres, [1.0, 1.0], 0.5, 50,
                            np.random.default_rng(3))
    assert dead.flagged.all() and np.all(np.isfinite(dead.points))


@pytest.mark.parametrize("kwargs,match", [
    ({"r": 0.0}, "r must"), ({"n": 0}, "n must"), ({"weights": [0.0]}, "weights"),
    ({"weights": [1.0, 1.0]}, "weights"), ({"proposals": 0}, "proposals"),
])
def test_sphere_starts_reject_bad_input(kwargs, match):
    args = {"field_at": _radial_field(np.zeros(2)), "centres": np.zeros((1, 2)), "weights": [1.0], "r": 0.1, "n": 4,
            "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(ValueError, match=match):
        pl.sphere_starts(**args)


# ---- adaptive steps in arc length, on lines known in closed form ----

def single_pair_lines(L=6.0):
    """The strong field of one pair ``a = (0, 0) -> b = (1, -2)`` (sine bridge, sigma0 = 1): a line
    through ``(z0, x0)`` is ``x(z) = c(z) + sigma(z) / sigma(z0) (x0 - c(z0))``, ``c`` the string's
    centre, so it ends at ``b``."""
    import physfield as pf

    a, b = np.zeros((1, 2)), np.array([[1.0, -2.0]])
    bound = pf.StrongField(L=L).bind(a, b)

    def exact_offset(p, start):
        z, z0 = p[:, 0], start[:, 0]
        centre = lambda zz: a + (zz / L)[:, None] * (b - a)  # noqa: E731
        ratio = np.sin(np.pi * z / L) / np.sin(np.pi * z0 / L)
        return np.linalg.norm(p[:, 1:] - centre(z) - ratio[:, None] * (start[:, 1:] - centre(z0)), axis=1)

    return bound, b, exact_offset


@pytest.mark.parametrize("method", list(pl.PAIRS))
def test_adaptive_arc_steps_follow_a_known_line_in_fewer_evaluations_than_rk4(method):
    """Every accepted point of an embedded pair's lines up to z = 0.98 L (short of the sink, where
    the lines converge into a point) lies on the exact line to within ten times the step's
    tolerance ``atol + rtol |p|`` (the local errors add up over the steps), and RK4 with fixed steps needs more evaluations for an
    error no smaller."""
    L = 6.0
    bound, b, offset = single_pair_lines(L)
    rng = np.random.default_rng(0)
    start = np.column_stack([rng.uniform(0.3, 1.5, 16), rng.normal(size=(16, 2)) * 0.3])
    end_rules = pl.Ends(L=L, targets=b, radius=1e-3, centre=np.array([L / 2, 0.5, -1.0]), R_max=100.0)

    def error(res):
        return max(offset(q, start)[q[:, 0] <= 0.98 * L].max(initial=0.0) for q in res.path[1:])

    for rtol in (1e-4, 1e-6):
        res = pl.follow_arc(lambda p: bound.direction(p)[0], start, end_rules, 1.0, 5000, method, keep=True,
                            rtol=rtol, atol=rtol)
        assert status_names(res) == ["arrived"] * 16
        got = error(res)
        scale = rtol * (1 + L)  # atol + rtol |p|: the tolerance each step's error is held to here
        assert scale / 1e3 < got < 10 * scale, (rtol, got)
        h = 0.5  # RK4's step halved until its error is no larger
        while True:
            fixed = pl.follow_arc(lambda p: bound.direction(p)[0], start, end_rules, h, 50000, "rk4", keep=True)
            if error(fixed) <= got:
                break
            h /= 2
        assert res.evaluations < fixed.evaluations, (rtol, res.evaluations, fixed.evaluations)
