"""Class-conditional learning: labels in the batches, label dropout, guidance, conditional
generation on a toy mixture, and log-likelihoods by the change of variables against closed forms."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn

import physfield as pf
from learn import data, guidance, models, train
from learn.logprob import log_prob
from physfield import data as pdata
from physfield import targets as tg
from tests.helpers import TINY, invoke, one_line_error, run_record


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditional")
    paths = {"g8": root / "g8.h5", "plain": root / "plain.h5", "digits": root / "digits.h5"}
    tg.generate(pf.StrongField(6.0), "gaussian", "8gaussians", 8192, paths["g8"], seed=1, conditional=True)
    tg.generate(pf.StrongField(6.0), "gaussian", "8gaussians", 1024, paths["plain"], seed=1)
    tg.generate(pf.StrongField(6.0), "gaussian", "digits", 512, paths["digits"], batch=64, conditional=True)
    return paths


@pytest.fixture(scope="module")
def g8_run(caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("g8run") / "run"
    result = invoke("train", "--targets", caches["g8"], "--out", out, "--steps", 400, "--lr", 3e-3, "--hidden", 64)
    assert result.exit_code == 0, result.output
    return out


def test_batches_carry_each_rows_label(caches):
    with tg.open_cache(caches["g8"]) as c:
        points, labels = c.points[()], c.labels[()]
        b = data.Batches(c, 100, seed=3, target="velocity")
        for k in (0, 7, 200):  # 200: past the first epoch
            P, U, y = b.get(k)
            assert y.dtype == np.int64 and y.shape == (100,)
            rows = [np.flatnonzero((points == p).all(axis=1))[0] for p in P]
            assert np.array_equal(labels[rows], y)  # shuffled together with the points
        with tg.open_cache(caches["plain"]) as p:
            assert len(data.Batches(p, 10).get(0)) == 2


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_label_embedding_conditions_the_net_and_none_is_its_own_label(kind):
    shape = (1, 8, 8) if kind == "unet" else None
    torch.manual_seed(0)
    net = models.build(models.spec(64, 64, 6.0, 8, 2, 8, shape, n_classes=10))
    p = torch.randn(5, 65)
    y = torch.tensor([0, 1, 2, 3, 4])
    assert not torch.allclose(net(p, y), net(p, y + 1))
    assert torch.equal(net(p), net(p, models.none_labels(10, 5)))  # no labels = "none"
    assert not torch.allclose(net(p), net(p, y))


def test_guidance_is_the_extrapolation_of_the_conditional_field():
    torch.manual_seed(0)
    net = models.build(models.spec(2, 2, 6.0, 16, 2, 8, n_classes=3))
    p, y = torch.randn(7, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    cond, uncond = net(p, y), net(p)
    for w in (0.0, 1.0, 3.0):
        assert torch.allclose(guidance.conditioned(net, y, w)(p), (1 + w) * cond - w * uncond, atol=1e-6)
    assert guidance.conditioned(net, None, 0.0) is net
    run = run_record(pf.StrongField(6.0), "direction", net={"kind": "mlp", "n_classes": 3})
    assert guidance.check_labels(run, [0, 2], None) == guidance.GUIDANCE and guidance.check_labels(run, None, None) == 0
    assert f"--label: {guidance.GUIDANCE:g}," in " ".join(invoke("sample", "--help").output.split())


@pytest.mark.parametrize("p_uncond,trained,frozen", [(1.0, "none", "classes"), (0.0, "classes", "none")])
def test_label_dropout_trains_the_none_label(caches, tmp_path, p_uncond, trained, frozen):
    """With p_uncond = 1 only the "none" row of the label table learns; with 0 only the classes do."""
    out = tmp_path / "run"
    cfg = train.TrainConfig(str(caches["g8"]), str(out), steps=20, hidden=16, depth=1, emb=8, p_uncond=p_uncond,
                            warmup=0, ema=0.0)
    train.train(cfg)
    torch.manual_seed(cfg.seed)
    init = models.build(train.load_checkpoint(out)["run"]["net"]).label.table.weight.detach()
    after = train.load_checkpoint(out)["model"]["label.table.weight"]
    rows = {"classes": slice(0, 8), "none": slice(8, 9)}
    assert torch.equal(after[rows[frozen]], init[rows[frozen]])
    assert not torch.allclose(after[rows[trained]], init[rows[trained]])


def test_conditional_generation_lands_in_the_asked_component(g8_run, tmp_path):
    """The toy analogue of conditional digits: of the samples asked for component k of 8gaussians,
    >= 95 % land nearest centre k, with and without guidance."""
    for w in (0.0, 2.0):
        out, lab = tmp_path / f"s{w}.npy", tmp_path / f"l{w}.npy"
        result = invoke("sample", "--checkpoint", g8_run, "--n", 200, "--label", "all", "--guidance", w,
                        "-o", out, "--labels", lab)
        assert result.exit_code == 0, result.output
        x, y = np.load(out), np.load(lab)
        assert x.shape == (1600, 2) and np.array_equal(y, np.repeat(np.arange(8), 200))
        centres = 4.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
        nearest = np.argmin(((x[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
        for k in range(8):
            assert np.mean(nearest[y == k] == k) >= 0.95, (w, k)
    uncond = tmp_path / "u.npy"
    assert invoke("sample", "--checkpoint", g8_run, "--n", 1600, "-o", uncond).exit_code == 0
    counts = np.bincount(np.argmin(((np.load(uncond)[:, None] - centres[None]) ** 2).sum(axis=2), axis=1), minlength=8)
    assert counts.min() > 1600 / 8 * 0.6  # the dropped-label field still covers every component


def test_sample_and_eval_with_labels_on_digits(caches, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--targets", caches["digits"], "--out", run, "--net", "mlp", *TINY, "--steps", 5).exit_code == 0
    s, lab, png = tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "grid.png"
    assert invoke("sample", "--checkpoint", run, "--n", 3, "--label", 2, "--label", 7, "--guidance", 1, "-o", s,
                  "--labels", lab).exit_code == 0
    assert np.array_equal(np.load(lab), [2, 2, 2, 7, 7, 7])
    result = invoke("eval", "--samples", s, "--reference", "digits", "--labels", lab, "--png", png)
    assert result.exit_code == 0, result.output
    assert "label 2: 3 samples, read as 2:" in result.output and "label 7: 3 samples" in result.output
    assert png.stat().st_size > 0


def test_conditional_errors_are_one_line(caches, g8_run, tmp_path):
    plain = tmp_path / "plain"
    assert invoke("train", "--targets", caches["plain"], "--out", plain, *TINY, "--steps", 3).exit_code == 0
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    np.save(tmp_path / "badlab.npy", np.zeros(3, dtype=np.int64))
    o = tmp_path / "o.npy"
    cases = [
        (("sample", "--checkpoint", plain, "--n", 5, "-o", o, "--label", 1), "has no labels"),
        (("sample", "--checkpoint", g8_run, "--n", 5, "-o", o, "--label", 8), "not one of the run's classes 0..7"),
        (("sample", "--checkpoint", g8_run, "--n", 5, "-o", o, "--label", "x"), "class numbers or 'all'"),
        (("sample", "--checkpoint", g8_run, "--n", 5, "-o", o, "--guidance", 1), "guidance needs labels"),
        (("sample", "--checkpoint", g8_run, "--n", 5, "-o", o, "--label", 1, "--guidance", -1), "guidance must be"),
        (("sample", "--checkpoint", g8_run, "--n", 5, "-o", o, "--labels", tmp_path / "l.npy"), "give --label"),
        (("eval", "--samples", tmp_path / "x.npy", "--reference", "moons", "--labels", tmp_path / "badlab.npy"),
         "must be 4 integers"),
        (("train", "--targets", caches["g8"], "--out", tmp_path / "r", "--p-uncond", 2), "--p-uncond"),
        (("logprob", "--checkpoint", g8_run, "--points", tmp_path / "none.npy", "-o", o), "not found"),
        (("logprob", "--checkpoint", g8_run, "--points", tmp_path / "badlab.npy", "-o", o), "(n, D)"),
        (("logprob", "--checkpoint", plain, "--points", tmp_path / "x.npy", "-o", o, "--label", 0), "has no labels"),
    ]
    for args, needle in cases:
        assert needle in one_line_error(invoke(*args)), args


# log-likelihood ---------------------------------------------------------------------------------


class Affine(nn.Module):
    """The velocity ``dx/dt`` of the straight lines ``x_t = A_t x_0 + t m``, ``A_t = (1 - t) I + t A``
    (``A`` symmetric positive definite, so ``A_t`` is invertible): the field of the affine map
    ``x -> A x + m`` between Gaussians."""

    def __init__(self, m, A, L):
        super().__init__()
        self.m, self.A, self.L = torch.as_tensor(m), torch.as_tensor(A), L
        self.label = None

    def forward(self, p, labels=None):
        t = p[:, :1] / self.L
        m, A = self.m.to(p.dtype), self.A.to(p.dtype)
        eye = torch.eye(len(m), dtype=p.dtype)
        At = (1 - t)[:, :, None] * eye + t[:, :, None] * A
        x0 = torch.linalg.solve(At, (p[:, 1:] - t * m)[:, :, None])[:, :, 0]
        return x0 @ (A - eye).T + m


def affine_case(D, seed=0, L=6.0, eps=0.006):
    """The net, a run record, points and the exact log-density of the map's output from ``z = eps``
    on: ``x_1 = A A_eps^-1 (x_eps - t_eps m) + m`` with ``x_eps ~ N(0, I)``."""
    rng = np.random.default_rng(seed)
    m, G = rng.normal(size=D), rng.normal(size=(D, D))
    A = G @ G.T / D + 0.3 * np.eye(D)
    te = eps / L
    M = A @ np.linalg.inv((1 - te) * np.eye(D) + te * A)
    q = multivariate_normal(m - M @ (te * m), M @ M.T)
    x = q.rvs(30, random_state=seed + 1).reshape(30, D)
    run = run_record(pf.StrongField(L), "velocity", dim=D, eps=eps)
    return Affine(m, A, L), run, x, q.logpdf(x)


@pytest.mark.parametrize("D", [1, 3, 8])
def test_log_prob_of_an_affine_map_is_the_gaussians(D):
    net, run, x, expected = affine_case(D)
    result = log_prob(net, run, x, steps=60)
    assert result.exact and np.all(result.spread == 0)
    assert np.max(np.abs(result.logp - expected)) < 1e-6
    euler = log_prob(net, run, x, steps=60, method="euler")  # first order: a visible, bounded error
    assert 1e-6 < np.max(np.abs(euler.logp - expected)) < 0.5


@pytest.mark.parametrize("kind,shape", [("mlp", None), ("unet", (1, 4, 4))])
def test_batched_divergence_equals_the_per_coordinate_loop(kind, shape, monkeypatch):
    """The exact divergence and Hutchinson's estimates from one batched backward pass equal the
    reference's one pass per vector, for a guided conditional net (MLP and UNet), also when the
    vectors are cut into several passes."""
    from learn import logprob
    from learn.slope import slope_fn

    D = 16
    torch.manual_seed(0)
    net = models.build(models.spec(D, D, 6.0, 16, 2, 8, shape=shape, n_classes=3, kind=kind)).double()
    y = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    slope = slope_fn(guidance.conditioned(net, y, 0.5), "velocity", None, 6.0)
    x = torch.randn(7, D, dtype=torch.float64, requires_grad=True)
    s, _ = slope(2.0, x)
    probes = (torch.randint(0, 2, (5, 7, D), generator=torch.Generator().manual_seed(1)) * 2 - 1).double()
    for e in (None, probes):
        want = logprob.divergence_loop(s, x, e)
        assert want.shape == (7, 1 if e is None else 5)
        for rows in (logprob.BATCH_ROWS, 7 * 3):  # all vectors at once, or three at a time
            monkeypatch.setattr(logprob, "BATCH_ROWS", rows)
            assert torch.allclose(logprob.divergence(s, x, e), want, rtol=1e-12, atol=1e-12)


def test_log_prob_with_adaptive_steps_and_in_float32():
    """dopri5 reaches the affine map's exact log-density within its tolerance in fewer evaluations
    than RK4 on 60 steps; float32 stays within 1e-3 of it."""
    net, run, x, expected = affine_case(3)
    rk4 = log_prob(net, run, x, steps=60)
    adaptive = log_prob(net, run, x, method="dopri5", rtol=1e-8, atol=1e-8)
    assert np.max(np.abs(adaptive.logp - expected)) < 1e-6
    assert rk4.evaluations == 240 and adaptive.evaluations < rk4.evaluations / 2
    single = log_prob(net, run, x, steps=60, precision="float32")
    assert 1e-7 < np.max(np.abs(single.logp - expected)) < 1e-3  # float32's rounding (float64's error: 4e-9)
    with pytest.raises(ValueError, match="precision"):
        log_prob(net, run, x, precision="float16")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_leaves_the_callers_model_as_it_was(dtype):
    """``log_prob`` integrates in float64 on a copy: the caller's net keeps its dtype and weights."""
    _, run, x, _ = affine_case(2)
    torch.manual_seed(0)
    model = models.build(models.spec(2, 2, 6.0, 16, 2, 8)).to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_prob(model, run, x, steps=4)
    after = model.state_dict()
    assert all(after[k].dtype == dtype and torch.equal(after[k], v) for k, v in before.items())


def test_hutchinson_estimate_is_unbiased_within_its_spread():
    net, run, x, expected = affine_case(6, seed=3)
    result = log_prob(net, run, x, steps=40, exact=False, probes=16, seed=1)
    z = (result.logp - expected) / result.spread
    assert result.probes == 16 and np.all(result.spread > 0)
    assert np.all(np.abs(z) < 5) and 0.2 < np.mean(z ** 2) < 3  # errors of the size the spread states
    assert not np.allclose(result.logp, expected, atol=1e-3)  # an estimate, not the exact value


def test_logprob_command_on_a_trained_run(g8_run, tmp_path):
    """The learned conditional field of a component is a narrow map onto it: its own class's log q is
    higher at its samples than another class's, and the exact and estimated divergences agree."""
    x, _ = pdata.sample_labelled("8gaussians", 50, seed=9, labels=np.zeros(50, dtype=np.int64))
    np.save(tmp_path / "x.npy", x)
    out, spread = tmp_path / "lp.npy", tmp_path / "sp.npy"
    for label in (0, 4):
        result = invoke("logprob", "--checkpoint", g8_run, "--points", tmp_path / "x.npy", "-o", out,
                        "--label", label, "--steps", 20)
        assert result.exit_code == 0, result.output
        np.save(tmp_path / f"lp{label}.npy", np.load(out))
    assert np.mean(np.load(tmp_path / "lp0.npy")) > np.mean(np.load(tmp_path / "lp4.npy")) + 5
    result = invoke("logprob", "--checkpoint", g8_run, "--points", tmp_path / "x.npy", "-o", out, "--label", 0,
                    "--steps", 20, "--divergence", "hutchinson", "--probes", 8, "--spread", spread)
    assert result.exit_code == 0 and "Hutchinson" in result.output
    z = (np.load(out) - np.load(tmp_path / "lp0.npy")) / np.load(spread)
    assert np.all(np.abs(z) < 6)


def test_per_label_scores_read_real_digits_as_their_labels():
    from learn import classifier

    x, y = classifier.digits()
    test = classifier.split()[1]
    real, labels = x[test], y[test]
    right = classifier.per_label(real, labels)
    assert sorted(right) == list(range(10)) and all(r["n"] == np.sum(labels == c) for c, r in right.items())
    assert all(r["accuracy"] > 0.9 and r["fd"] < 1e-6 for r in right.values())  # each class against itself
    wrong = classifier.per_label(real, (labels + 1) % 10)
    assert all(r["accuracy"] < 0.1 and r["fd"] > 10 for r in wrong.values())
