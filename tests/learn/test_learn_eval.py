"""learn: Coulomb arc-length sampling, the digits classifier and its metrics, translation distance, PNGs."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import physfield as pf
from cli import learn
from learn import check as learn_check
from learn import classifier, evaluate, sample
from physfield import data as pdata
from tests.helpers import one_line_error, run_record

ARRIVED, LEAKED, REVERSED, LOST = range(4)
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(learn, [str(a) for a in args])


def sphere(n, dim, seed=0):
    w = np.random.default_rng(seed).standard_normal((n, dim))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


# ---- Coulomb: arc-length sampling -------------------------------------------------------------------

class PointCharge(torch.nn.Module):
    """The exact direction of an isolated positive point charge at ``c`` in R^{D+1}: (p - c)/|p - c|.
    Its lines are the rays from ``c``."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.as_tensor(c, dtype=torch.float64)

    def forward(self, p):
        return p - self.c


class Capacitor(torch.nn.Module):
    """The exact Coulomb direction of a small capacitor, by physfield (NumPy backend)."""

    def __init__(self, L, sources, sinks):
        super().__init__()
        self.field, self.sources, self.sinks = pf.CoulombField(L), sources, sinks

    def forward(self, p):
        u, _ = self.field.direction(p.double().numpy(), self.sources, self.sinks, backend="numpy")
        return torch.from_numpy(u)


def arc(*args, **kwargs):
    """``learn.sample.follow_arc`` as ``(status, end, turned, steps done, path)``."""
    res = sample.follow_arc(*args, **kwargs)
    return res.status, res.end, res.turned, int(res.steps.max()), res.path


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_isolated_source_half_reverse_and_rays_land_where_they_point(method):
    """A charge at height z_c = 0.4: lines start on a small sphere around it, uniform in direction.
    A ray in direction w (w_z < 0) meets z = 0 at x = z_c w_x / -w_z (reversed: half of them, less
    the nearly horizontal ones that run out of room first); one with w_z > 0 meets z = L = 1 at
    x = (L - z_c) w_x / w_z, arrived inside the support radius 1, leaked outside it."""
    zc, L, r0, h, cap, radius = 0.4, 1.0, 1e-3, 0.04, 200, 30.0
    w = sphere(2000, 3)
    centre = np.array([zc, 0.0, 0.0])
    p0 = torch.from_numpy(centre + r0 * w)
    status, end, fz_neg, done, _ = arc(PointCharge(centre), p0, L, h, cap, torch.zeros(2), 1.0, radius, method)
    status, end = status.numpy(), end.numpy()
    assert np.isfinite(end).all() and done <= cap
    # the expected outcome of each ray from geometry alone
    down = w[:, 0] < 0
    depth = np.where(down, zc, L - zc) / np.abs(w[:, 0])  # distance along the ray to its plane
    x_hit = depth[:, None] * w[:, 1:]
    reach = (depth < cap * h - 2 * h) & (np.linalg.norm(x_hit, axis=1) < radius * 0.99)
    margin = (np.abs(depth - cap * h) > 2 * h) & (np.abs(np.linalg.norm(x_hit, axis=1) - 1.0) > 1e-6)
    expected = np.where(~reach, LOST, np.where(down, REVERSED, np.where(np.linalg.norm(x_hit, axis=1) <= 1.0,
                                                                       ARRIVED, LEAKED)))
    np.testing.assert_array_equal(status[margin], expected[margin])
    assert abs((status == REVERSED).mean() - 0.5) < 0.05
    hit = (status == REVERSED) | (status == ARRIVED) | (status == LEAKED)
    np.testing.assert_allclose(end[hit, 1:], (centre[1:] + x_hit)[hit], atol=1e-9)
    np.testing.assert_allclose(end[hit, 0], np.where(down, 0.0, L)[hit], atol=1e-12)
    np.testing.assert_array_equal(fz_neg.numpy(), down)


def test_null_points_and_circles_end_lost_never_hang():
    class Swirl(torch.nn.Module):
        """Circles about (z, x1) = (0.5, 0); f = 0 on the axis, NaN where x2 > 5."""

        def forward(self, p):
            f = torch.stack([-p[:, 1], p[:, 0] - 0.5, torch.zeros_like(p[:, 0])], dim=1)
            return torch.where(p[:, 2:3] > 5, torch.nan, f)

    p0 = torch.tensor([[0.5, 0.0, 0.0], [0.5, 0.2, 0.0], [0.6, 0.0, 7.0]], dtype=torch.float64)
    status, end, _, done, path = arc(Swirl(), p0, 1.0, 0.01, 300, torch.zeros(2), 1.0, 10.0, "heun", keep=True)
    assert status.tolist() == [LOST] * 3 and done == 300 and len(path) == 301
    assert torch.isfinite(end).all()
    np.testing.assert_array_equal(end[[0, 2]].numpy(), p0[[0, 2]].numpy())  # null / NaN: stays put
    assert float((end[1] - torch.tensor([0.5, 0, 0], dtype=torch.float64)).norm()) == pytest.approx(0.2, rel=1e-3)


def test_capacitor_lines_never_reverse_between_the_plates():
    """Inside 0 < z < L every charge of the exact capacitor pushes E_z > 0: no line from z = eps
    can go behind P; every line ends with one status within the cap, none NaN."""
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((4, 2)), rng.standard_normal((4, 2)) + [0.5, 0.0]
    L = 1.0
    x0 = A[rng.integers(0, 4, 200)] + 0.3 * rng.standard_normal((200, 2))
    p0 = torch.from_numpy(np.column_stack([np.full(200, 1e-3), x0]))
    c = torch.from_numpy(B.mean(axis=0))
    support = float(np.linalg.norm(B - B.mean(axis=0), axis=1).max())
    status, end, fz_neg, done, _ = arc(Capacitor(L, A, B), p0, L, 0.01, 1000, c, support, 40.0)
    status, end = status.numpy(), end.numpy()
    assert (status != REVERSED).all() and not fz_neg.any() and done < 1000
    assert np.isfinite(end).all() and np.all(end[status <= LEAKED, 0] == L)
    dist = np.linalg.norm(end[:, 1:] - B.mean(axis=0), axis=1)
    assert (dist[status == ARRIVED] <= support).all() and (dist[status == LEAKED] > support).all()
    assert (status == ARRIVED).sum() > 100


def test_coulomb_run_samples_in_arc_length():
    """``sample`` dispatches on the run's field kind: a Coulomb run record gives arrived-only samples."""
    run = run_record(pf.CoulombField(1.0), "direction")
    src = pdata.sample("gaussian", 300, seed=0)
    tgt = pdata.sample("gaussian", 300, seed=1)
    model = Capacitor(1.0, src[:50], tgt[:50]).float()
    result = sample.sample(model, run, 64, steps=50, max_steps=400)
    s = result.stats
    assert s["sampler"] == "arc" and s["arrived"] + s["leaked"] + s["reversed"] + s["lost"] == 64
    assert len(result.samples) == s["arrived"] == result.mask.sum() and s["arrived"] > 40
    np.testing.assert_array_equal(result.inputs, pdata.sample("gaussian", 64, seed=0)[result.mask])
    assert np.isfinite(result.samples).all() and "arrived" in str(result)
    strong = run_record(pf.StrongField(1.0), "direction")
    assert "sampler" not in sample.sample(model, strong, 8, steps=5).stats  # the z-parametrised sampler


class Affine(torch.nn.Module):
    """A hand-made net: velocity ``f = shift`` (``D`` outputs) or direction ``f = (f_z, shift)``."""

    def __init__(self, shift, fz=None):
        super().__init__()
        self.shift, self.fz = torch.tensor(shift, dtype=torch.float32), fz

    def forward(self, p):
        f = self.shift.to(p.dtype).expand(len(p), -1)
        if self.fz is None:
            return f
        return torch.cat([self.fz(p)[:, None], f], dim=1)




GAUSSIAN_TO_MOONS = {"source": "gaussian", "target": "moons"}


@pytest.mark.parametrize("net_, target, data, failing", [
    (Affine([0.0, 0.0]), "velocity", {}, set()),  # P = Q: the exact transport, its ends are draws of Q
    (Affine([0.0, 0.0]), "velocity", GAUSSIAN_TO_MOONS, {"transport_w2"}),  # no transport: the ends are P
    (Affine([0.6, 0.0]), "velocity", {}, {"transport_w2"}),  # Q moved by 0.6 of its spread
    (Affine([20.0, 0.0]), "velocity", {}, {"lines_leaked"}),  # thrown wide of Q: no line arrives
    (Affine([0.0, 0.0], fz=lambda p: 3.0 - p[:, 0]), "direction", {}, {"lines_turned", "lines_lost"}),
], ids=["straight", "identity", "shifted", "wide", "turning"])
@pytest.mark.parametrize("method", ["bs32", "rk4"])
def test_learn_check_measures_learned_lines(net_, target, data, failing, method):
    """A net whose lines end at draws of Q (the exact transport of P = Q) passes; a net that does not
    transport P, or moves Q by a fraction of its spread, fails transport_w2; one that throws the
    lines wide of Q fails leaked; one whose f_z turns negative at z = 3 (a null plane there: lines
    stall) fails turned and lost; with adaptive steps (the default) as with RK4's."""
    run = run_record(pf.StrongField(6.0, d=0.5), target, **data)
    rows, stats = learn_check.check(net_, run, n=200, steps=50, method=method)
    failed = {r["name"] for r in rows if r["status"] == "fail"}
    assert failed == failing, rows
    if failing == set():  # straight lines take the longest step, (L - eps) / 50: 50 steps of 3 (FSAL) or 4 stages
        assert stats["evaluations"] == {"bs32": 3 * 50 + 1, "rk4": 4 * 50}[method]
    assert {r["name"] for r in rows} >= {"lines_turned", "lines_reversed", "lines_leaked", "lines_lost",
                                        "lines_off_q"}
    assert all(r["status"] == "measured" for r in rows if r["name"] == "lines_off_q")


# ---- digits classifier and metrics ------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    return classifier.load()


def test_classifier_data_split_and_cache(net):
    x, y = classifier.digits()
    threes = pdata.sample("digits:3", (y == 3).sum(), seed=0)  # physfield's scaling, same rows
    assert sorted(map(tuple, threes)) == sorted(map(tuple, x[y == 3]))
    train, test = classifier.split()
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    assert classifier.accuracy(net) > 0.95
    files = list(classifier.default_cache_dir().glob(f"digits_classifier_{classifier._key()}.pt"))
    assert len(files) == 1
    classifier.load.cache_clear()
    again = classifier.load()
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_frechet_distance(net):
    real = classifier.held_out()
    f = classifier.features
    a, b = f(real[::2], net), f(real[1::2], net)
    noise = f(np.random.default_rng(0).uniform(-1, 1, (300, 64)), net)
    same, far = classifier.frechet(a, b), classifier.frechet(noise, b)
    assert 0 <= same < 0.1 * far
    assert classifier.frechet(a, a) == pytest.approx(0.0, abs=1e-6 * far)
    # a Gaussian check of the formula: FD(N(0, I), N(m, 4 I)) = |m|^2 + d (1 + 4 - 2 * 2)
    g = np.random.default_rng(1).standard_normal((200000, 3))
    assert classifier.frechet(g, 2 * g[::-1] + [1, 2, 0]) == pytest.approx(5 + 3, rel=0.02)


def test_intended_class_accuracy(net):
    threes = classifier.report(classifier.held_out(3), "digits:3", net=net)
    twos = classifier.report(classifier.held_out(2), "digits:3", net=net)
    assert threes["accuracy_intended"] > 0.9 and twos["accuracy_intended"] < 0.05
    assert threes["fd"] < 0.1 * twos["fd"]
    assert classifier.report(classifier.held_out(2), "digits", intended=2, net=net)["accuracy_intended"] > 0.9


def test_confident_share(net):
    """Real digits read with confidence; blurred strokes (the mean of a 2 and a 3, or of many
    digits) and uniform noise do not; the share follows the threshold it is given."""
    real, twos, threes = classifier.held_out(), classifier.held_out(2), classifier.held_out(3)
    m = min(len(twos), len(threes))
    blur = (twos[:m] + threes[:m]) / 2
    smear = np.stack([real[i::40][:20].mean(axis=0) for i in range(40)])
    noise = np.random.default_rng(0).uniform(-1, 1, (300, 64))
    share = classifier.confident_share
    assert share(real, net) > 0.95 and share(noise, net) < 0.1
    assert share(smear, net) < share(real, net) - 0.4 and share(blur, net) < share(real, net) - 0.3
    probs = net(torch.tensor(real, dtype=torch.float32)).softmax(dim=1).amax(dim=1).detach().numpy()
    for t in (0.5, 0.9, 0.99):
        assert share(real, net, threshold=t) == pytest.approx((probs >= t).mean())
    report = classifier.report(real[:100], "digits", net=net)
    assert report["confident"] == pytest.approx(share(real[:100], net))
    assert report["confident_real"] == pytest.approx(share(real, net))


def test_input_output_distance():
    x = pdata.sample("moons", 50, seed=0)
    assert evaluate.input_output_distance(x, x) == 0.0
    assert evaluate.input_output_distance(x, x + [3.0, 4.0]) == pytest.approx(5.0)


def test_eval_cli_digits_translation_and_grid(net, tmp_path):
    twos, threes = classifier.held_out(2), classifier.held_out(3)
    m = min(len(twos), len(threes))
    np.save(tmp_path / "in.npy", twos[:m])
    np.save(tmp_path / "out.npy", threes[:m])
    r = invoke("eval", "--samples", tmp_path / "out.npy", "--reference", "digits:3", "--inputs", tmp_path / "in.npy",
               "--n", 100, "--png", tmp_path / "grid.png", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["digits"]["accuracy_intended"] > 0.9 and report["digits"]["intended"] == 3
    assert report["input_output_distance"] == pytest.approx(evaluate.input_output_distance(twos[:m], threes[:m]))
    assert (tmp_path / "grid.png").read_bytes()[:8] == PNG
    r = invoke("eval", "--samples", tmp_path / "in.npy", "--reference", "digits:3", "--n", 100)
    assert r.exit_code == 0 and "classified as 3: 0.0" in r.output and "Frechet" in r.output
    assert "read with confidence >= 0.9" in r.output


def test_bad_input_is_one_line(tmp_path):
    np.save(tmp_path / "d64.npy", np.zeros((10, 64)))
    np.save(tmp_path / "d2.npy", np.zeros((10, 2)))
    np.save(tmp_path / "in9.npy", np.zeros((9, 64)))
    cases = [
        (("eval", "--samples", tmp_path / "d2.npy", "--reference", "moons", "--classify", 3), "digits reference"),
        (("eval", "--samples", tmp_path / "d64.npy", "--reference", "digits:x"), "0..9"),
        (("eval", "--samples", tmp_path / "d64.npy", "--reference", "digits", "--inputs", tmp_path / "in9.npy"),
         "same shape"),
        (("eval", "--samples", tmp_path / "d64.npy", "--reference", "digits", "--inputs", tmp_path / "no.npy"),
         "inputs file not found"),
        (("eval", "--samples", tmp_path / "d2.npy", "--reference", "digits:3"),
         "the samples are 2-dimensional but the reference 'digits:3' is 64-dimensional"),
        (("eval", "--samples", tmp_path / "d64.npy", "--reference", "moons"),
         "the samples are 64-dimensional but the reference 'moons' is 2-dimensional"),
    ]
    for args, needle in cases:
        assert needle in one_line_error(invoke(*args)), args
    r = invoke("eval", "--samples", tmp_path / "d64.npy", "--reference", "digits", "--classify", 11)
    assert r.exit_code == 2 and "Traceback" not in r.output
    with pytest.raises(ValueError, match="max_steps"):
        sample.follow_arc(PointCharge([0.5, 0, 0]), torch.ones(1, 3), 1.0, 0.1, 0, torch.zeros(2), 1.0, 1.0)


def test_coulomb_run_end_to_end_cli(tmp_path):
    """cache -> train (a few steps) -> `learn sample` of a Coulomb run: arc length, inputs saved."""
    from physfield import targets as tg

    tg.generate(pf.CoulombField(2.0), "gaussian", "moons", 128, tmp_path / "c.h5", batch=64)
    run = tmp_path / "run"
    r = invoke("train", "--targets", tmp_path / "c.h5", "--out", run, "--hidden", 16, "--depth", 1, "--emb", 4,
               "--batch", 64, "--steps", 20)
    assert r.exit_code == 0, r.output
    r = invoke("sample", "--checkpoint", run, "--n", 40, "--steps", 10, "--max-steps", 30, "-o", tmp_path / "s.npy",
               "--inputs", tmp_path / "in.npy", "--trajectories", tmp_path / "t.npy")
    assert r.exit_code == 0, r.output
    counts = {k: int(r.output.split(f" {k}")[0].split()[-1]) for k in sample.ARC_STATUS}
    assert sum(counts.values()) == 40 and "arc length" in r.output
    s, x = np.load(tmp_path / "s.npy"), np.load(tmp_path / "in.npy")
    assert s.shape == x.shape == (counts["arrived"], 2) and np.isfinite(s).all()
    paths = np.load(tmp_path / "t.npy")
    assert paths.shape[1:] == (40, 3) and len(paths) <= 31 and np.isfinite(paths).all()
    r = invoke("sample", "--checkpoint", run, "--n", 5, "--radius", -1, "-o", tmp_path / "x.npy")
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = invoke("check", "--checkpoint", run, "--n", 30, "--steps", 10, "--json")
    assert r.exit_code == 0, r.output  # the Coulomb field claims none of these line properties
    report = json.loads(r.output)
    assert {row["status"] for row in report["checks"]} == {"measured"} and report["passed"]
    r = invoke("check", "--checkpoint", run, "--n", 30, "--steps", 10)
    assert r.exit_code == 0 and "lines_leaked" in r.output and "all 0 claimed properties hold" in r.output
    assert "bs32 (rtol 0.0001, atol 0.0001, steps at most (L - eps)/10)" in r.output  # the default stepper
    r = invoke("check", "--checkpoint", run, "--n", 30, "--steps", 10, "--method", "dopri5", "--rtol", "1e-3")
    assert r.exit_code == 0 and "dopri5 (rtol 0.001, atol 0.0001" in r.output
    r = invoke("check", "--checkpoint", run, "--n", 30, "--steps", 10, "--method", "rk4")
    assert r.exit_code == 0 and "rk4, step (L - eps)/10" in r.output
    assert "Error:" in invoke("check", "--checkpoint", tmp_path / "nothing").output
