"""learn: batches, integrators, metrics, train -> sample -> eval end to end, resume, bad input."""

import json
import re

import h5py
import numpy as np
import pytest
import torch

import physfield as pf
from learn import data, evaluate, sample, slope, train
from learn.record import RunRecord
from physfield import data as pdata
from physfield import lines
from physfield import targets as tg
from tests.helpers import TINY, invoke, one_line_error, run_record


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    paths = {"toy": root / "toy.h5", "odd": root / "odd.h5", "coulomb": root / "coulomb.h5",
             "digits": root / "digits.h5", "moons": root / "moons.h5"}
    tg.generate(pf.StrongField(6.0), "gaussian", "8gaussians", 4096, paths["toy"], batch=256, seed=1)
    tg.generate(pf.StrongField(6.0), "8gaussians", "moons", 65536, paths["moons"], seed=1)  # the defaults
    tg.generate(pf.StrongField(6.0), "gaussian", "moons", 1000, paths["odd"], batch=128)  # 8 chunks, last 104 rows
    tg.generate(pf.CoulombField(6.0), "gaussian", "moons", 128, paths["coulomb"], batch=64)
    tg.generate(pf.StrongField(20.0, d=10.0), "gaussian", "digits:3", 512, paths["digits"], batch=64, dim=64)
    return paths


# ---- data ----------------------------------------------------------------------------------------

def _epoch_rows(batches, epoch):
    """The points of one epoch, in stream order."""
    n = batches.n
    return batches.rows(epoch * n, (epoch + 1) * n)[0]


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 2 * 128 * 24])  # in memory; 2 chunks per block
def test_epochs_are_permutations_pure_in_seed_and_step(caches, buffer_bytes):
    with tg.open_cache(caches["odd"]) as cache:
        stored = cache.points[()]
        b = data.Batches(cache, 48, seed=3, buffer_bytes=buffer_bytes)
        assert (b._rows is None) == (buffer_bytes < 1 << 30)
        order = {tuple(r): i for i, r in enumerate(stored)}
        e0, e1 = _epoch_rows(b, 0), _epoch_rows(b, 1)
        for rows in (e0, e1):
            assert sorted(order[tuple(r)] for r in rows) == list(range(len(stored)))  # each row once
        assert not np.array_equal(e0, e1) and not np.array_equal(e0, stored)
        # batch k is a pure function of (seed, k): a fresh reader, asked out of order, agrees
        fresh = data.Batches(cache, 48, seed=3, buffer_bytes=buffer_bytes)
        for k in (40, 3, 21):  # 21 straddles the epoch boundary (1000 = 20 * 48 + 40)
            np.testing.assert_array_equal(fresh.get(k)[0], b.get(k)[0])
        other = data.Batches(cache, 48, seed=4, buffer_bytes=buffer_bytes)
        assert not np.array_equal(other.get(0)[0], b.get(0)[0])
        # targets stay attached to their points
        P, U = b.get(7)
        idx = [order[tuple(r)] for r in P]
        np.testing.assert_array_equal(U, cache.targets[()][idx])


def test_chunked_blocks_only_mix_their_chunks(caches):
    with tg.open_cache(caches["odd"]) as cache:
        b = data.Batches(cache, 50, seed=0, buffer_bytes=2 * 128 * 24)
        assert (b.chunk, b.per_block, b.n_chunks) == (128, 2, 8)
        order = {tuple(r): i for i, r in enumerate(cache.points[()])}
        blocks, starts = b._layout(0)
        rows = _epoch_rows(b, 0)
        for blk, lo, hi in zip(blocks, starts[:-1], starts[1:]):
            assert {order[tuple(r)] // 128 for r in rows[lo:hi]} == set(blk.tolist())


def test_velocity_targets(caches):
    with tg.open_cache(caches["toy"]) as cache:
        P, U = data.Batches(cache, 32).get(0)
        _, V = data.Batches(cache, 32, target="velocity").get(0)
        np.testing.assert_allclose(V, cache.attrs["L"] * U[:, 1:] / U[:, :1], rtol=1e-6)
    with tg.open_cache(caches["coulomb"]) as cache, pytest.raises(ValueError, match="u_z > 0 .lines followed in z., not coulomb"):
        data.Batches(cache, 32, target="velocity")


# ---- integrators and f_z <= 0 -----------------------------------------------------------------------

class Linear(torch.nn.Module):
    """Direction field f = (1, x): the lines are x(z) = x0 exp(z - z0)."""

    def forward(self, p):
        return torch.cat([torch.ones_like(p[:, :1]), p[:, 1:]], dim=1)


@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_integrator_convergence_order(method, order):
    x0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    exact = x0 * np.exp(1.0)
    rate = slope.slope_fn(Linear(), "direction")
    err = [float((lines.follow_z(rate, x0, 0.0, 1.0, n, method)[0] - exact).abs().max()) for n in (10, 20)]
    assert np.log2(err[0] / err[1]) == pytest.approx(order, abs=0.2)


class Constant(torch.nn.Module):
    """Velocity network f = v everywhere."""

    def __init__(self, v):
        super().__init__()
        self.v = torch.tensor(v, dtype=torch.float64)

    def forward(self, p):
        return self.v.expand(len(p), -1)


@pytest.mark.parametrize("L", [1.0, 6.0, 40.0])
def test_velocity_is_per_unit_of_z_over_L(L):
    """A velocity network answers dx/dt, t = z / L: a constant v moves every line by v (L - z0) / L."""
    x0 = torch.tensor([[0.5, -1.0], [2.0, 3.0]], dtype=torch.float64)
    v = [1.5, -2.0]
    res = lines.follow_z(slope.slope_fn(Constant(v), "velocity", L=L), x0, 0.25, L, 7, "heun")
    x, bad = res.x, res.bad
    np.testing.assert_allclose(x.numpy(), x0.numpy() + np.array(v) * (L - 0.25) / L, atol=1e-12)
    assert int(bad.sum()) == 0


class Reversing(torch.nn.Module):
    """f_z = -1 where x_1 < 0 (the line would reverse), f = (1, 1, 0) elsewhere."""

    def forward(self, p):
        fz = torch.where(p[:, 1:2] < 0, -1.0, 1.0)
        return torch.cat([fz, torch.ones_like(fz), torch.zeros_like(fz)], dim=1)


@pytest.mark.parametrize("method, stages", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_nonpositive_fz_is_counted_and_skipped(method, stages):
    x0 = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [-2.0, 3.0]])
    res = lines.follow_z(slope.slope_fn(Reversing(), "direction"), x0, 0.0, 2.0, 8, method, keep=True)
    x, bad, path = res.x, res.bad, res.path
    assert torch.isfinite(x).all()
    assert bad.tolist() == [8 * stages, 0, 8 * stages]
    np.testing.assert_allclose(x.numpy(), [[-1.0, 0.0], [3.0, 0.0], [-2.0, 3.0]], atol=1e-6)
    assert len(path) == 9 and float(path[-1][0, 0]) == 2.0


# ---- metrics ----------------------------------------------------------------------------------------

def test_w2_of_a_shift_and_mmd():
    x = pdata.sample("moons", 300, seed=0)
    report, _, _ = evaluate.evaluate(x + [0.3, -0.4], "moons", n=300, seed=0)
    assert report["w2"] == pytest.approx(0.5, abs=1e-9)  # translating by c costs exactly |c|
    assert evaluate.mmd(x, x)[0] == pytest.approx(0.0, abs=1e-6)
    y = pdata.sample("moons", 300, seed=1)
    near, far = evaluate.mmd(x, y, [1.0])[0], evaluate.mmd(x, y + 1.0, [1.0])[0]
    assert far > 3 * near
    assert evaluate.mmd(x, y)[1] == [pytest.approx(np.median(np.linalg.norm(
        np.concatenate([x, y])[:, None] - np.concatenate([x, y])[None], axis=2)[np.triu_indices(600, 1)]))]


# ---- end to end -------------------------------------------------------------------------------------

def exact_transport(field, x0, sinks, steps=100):
    """Ends at ``z = L`` of the exact field's lines from ``x0`` (the charges on ``z = 0``, paired
    with ``sinks``), followed like ``learn sample`` follows a net: ``dx/dz = u_x / u_z``, Euler."""
    bound = field.bind(x0, sinks, plan="paired")

    def slope(z, x):
        u, _ = bound.direction(np.column_stack([np.full(len(x), z), x]))
        return u[:, 1:] / u[:, :1], u[:, 0] <= 0

    return lines.follow_z(slope, x0, 1e-3 * field.L, field.L, steps, "euler").x


def test_train_sample_eval_is_as_good_as_the_exact_field(caches, tmp_path):
    """The README's train -> sample -> eval on a cache made with the defaults, bounded by the
    exact field's own transport: W2 of the learned samples against held-out moons, averaged over
    8 sample seeds, no higher than the W2 of the exact field's lines from the same inputs (to 8
    fresh draws of ``Q`` as sinks). Both are scored against the same reference; W2 of 800 points
    varies by +-25 % between draws of the sinks, hence the averages."""
    run = tmp_path / "run"
    r = invoke("train", "--targets", caches["moons"], "--out", run, "--steps", 1500, "--lr", 3e-3, "--warmup", 20,
               "--hidden", 128, "--checkpoint-every", 500)
    assert r.exit_code == 0, r.output
    record = RunRecord.from_dict(json.loads((run / "run.json").read_text()))  # the folder's record, typed
    assert record.targets.source == "8gaussians" and record.L == 6.0
    assert record.field.params()["kind"] == "strong" and record.train.steps == 1500
    assert record.train.target == "velocity"  # auto on a strong cache
    samples = tmp_path / "s.npy"
    r = invoke("sample", "--checkpoint", run, "--n", 800, "-o", samples, "--trajectories", tmp_path / "t.npy")
    assert r.exit_code == 0 and "WARNING" not in r.output, r.output
    paths = np.load(tmp_path / "t.npy")
    assert paths.shape == (101, 800, 3)
    np.testing.assert_allclose(paths[-1, :, 1:], np.load(samples))
    assert paths[0, 0, 0] == pytest.approx(0.006) and paths[-1, 0, 0] == pytest.approx(6.0)
    r = invoke("eval", "--samples", samples, "--reference", "moons", "--n", 800, "--json", "--png",
               tmp_path / "s.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").stat().st_size > 0
    checked = invoke("check", "--checkpoint", run, "--n", 400, "--json")  # the README's check of its run passes
    assert checked.exit_code == 0, checked.output
    assert {row["name"]: row["status"] for row in json.loads(checked.output)["checks"]}["transport_w2"] == "pass"

    def w2(x):
        return evaluate.evaluate(x, "moons", 800)[0]["w2"]

    model, record = sample.load_model(run)
    learned, exact = [json.loads(r.output)["w2"]], []
    for seed in range(8):
        res = sample.sample(model, record, 800, seed=seed)
        assert res.stats["fz_nonpositive"] == 0 and res.stats["nonfinite"] == 0
        if seed:
            learned.append(w2(res.samples))
        exact.append(w2(exact_transport(pf.StrongField(6.0), res.inputs, pdata.sample("moons", 800, seed=[11 + seed, 1]))))
    assert learned[0] == pytest.approx(w2(np.load(samples)))
    assert np.mean(learned) <= np.mean(exact), (learned, exact)


def test_resume_reproduces_the_uninterrupted_loss_curve(caches, tmp_path, monkeypatch):
    args = ["--targets", caches["toy"], *TINY, "--steps", 60, "--checkpoint-every", 25, "--warmup", 10]
    assert invoke("train", "--out", tmp_path / "a", *args).exit_code == 0
    whole = np.loadtxt(tmp_path / "a" / "loss.csv", delimiter=",", skiprows=1)[:, 1]

    real_get = data.Batches.get

    def killed_at_37(self, k, *rows):
        if k == 37:
            raise KeyboardInterrupt
        return real_get(self, k, *rows)

    monkeypatch.setattr(data.Batches, "get", killed_at_37)
    with pytest.raises(KeyboardInterrupt):
        train.train(train.TrainConfig(str(caches["toy"]), str(tmp_path / "b"), steps=60, batch=64,
                                      checkpoint_every=25, warmup=10, hidden=32, depth=2, emb=8))
    monkeypatch.undo()
    assert train.load_checkpoint(tmp_path / "b")["step"] == 25
    assert invoke("train", "--out", tmp_path / "b", *args, "--resume").exit_code == 0
    resumed = np.loadtxt(tmp_path / "b" / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    np.testing.assert_array_equal(resumed, whole)
    a, b = (train.load_checkpoint(tmp_path / x) for x in "ab")
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name])


USER_TARGET = '''
import torch

from learn.regression import Target


class Doubled(Target):
    """The unit direction scaled by 2: the net regresses 2 u, its lines are those of u."""

    def output_dim(self, D):
        return D + 1

    def encode(self, U, L):
        return 2 * U

    def slope(self, f, L):
        ok = f[:, 0] > 0
        return torch.where(ok[:, None], f[:, 1:] / torch.where(ok, f[:, 0], 1.0)[:, None], 0.0), ~ok

    def field(self, f, L):
        return f / 2
'''


def test_a_user_regression_target_runs_through_the_commands(caches, tmp_path, monkeypatch):
    """``learn train --target module:Class`` trains a user's own :class:`learn.regression.Target`:
    the batches are its encoding of the cache, the run records its spec, and ``learn sample`` and
    ``learn check`` read the lines off it."""
    from learn import regression

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mytargets.py").write_text(USER_TARGET)
    with tg.open_cache(caches["toy"]) as cache:
        _, U = data.Batches(cache, 32).get(0)
        _, V = data.Batches(cache, 32, target="mytargets:Doubled").get(0)
        np.testing.assert_array_equal(V, 2 * U)
    r = invoke("train", "--targets", caches["toy"], "--out", "run", *TINY, "--steps", 10, "--target",
               "mytargets:Doubled")
    assert r.exit_code == 0, r.output
    model, record = sample.load_model("run", "raw")
    assert record.train.target == "mytargets:Doubled" and record.net["out"] == 3
    assert regression.get(record.train.target).encode(np.ones((1, 3), np.float32), 6.0).tolist() == [[2, 2, 2]]
    r = invoke("sample", "--checkpoint", "run", "--n", 20, "--steps", 5, "-o", "s.npy")
    assert r.exit_code == 0, r.output
    assert np.load("s.npy").shape == (20, 2)
    assert "unknown regression target 'sideways'" in one_line_error(invoke("train", "--targets", caches["toy"], "--out",
                                                                           "r2", "--target", "sideways"))


USER_NET = '''
from torch import nn

from learn.models import Net


class Linear(Net):
    """One linear map of (z, x): a network kind in one class."""

    hidden = 4

    def __init__(self, D, out, L, hidden, depth, emb, n_classes=None):
        super().__init__()
        self.lin = nn.Linear(D + 1, out)

    def forward(self, points, labels=None):
        return self.lin(points)
'''


def test_a_user_network_runs_through_the_commands(caches, tmp_path, monkeypatch):
    """``learn train --net module:Class`` trains a user's own :class:`learn.models.Net`; the run
    records its spec, and ``learn sample`` rebuilds it from the run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHYSFIELD_PROGRESS_SECONDS", "0")  # and plain progress lines, the output not being a terminal
    (tmp_path / "mynets.py").write_text(USER_NET)
    r = invoke("train", "--targets", caches["toy"], "--out", "run", "--steps", 5, "--batch", 64, "--net", "mynets:Linear")
    assert r.exit_code == 0, r.output
    assert "train: 5/5 steps (100%), " in r.output and ", loss=" in r.output, r.output
    model, record = sample.load_model("run", "raw")
    assert record.net["kind"] == "mynets:Linear" and record.net["hidden"] == 4
    assert type(model).__name__ == "Linear" and sum(p.numel() for p in model.parameters()) == 3 * 2 + 2
    r = invoke("sample", "--checkpoint", "run", "--n", 20, "--steps", 5, "-o", "new/folder/s.npy")
    assert r.exit_code == 0, r.output  # a missing output folder is created
    assert np.load("new/folder/s.npy").shape == (20, 2)
    assert "sample: 100%, " in r.output and "rk4 with 5 steps, 20 evaluations" in r.output, r.output
    r = invoke("sample", "--checkpoint", "run", "--n", 20, "--method", "dopri5", "--rtol", 1e-3, "--atol", 1e-3,
               "-o", "s.npy")
    assert r.exit_code == 0 and re.search(r"dopri5 with \d+ steps \(\d+ rejected; rtol 0.001, atol 0.001\), \d+ "
                                          r"evaluations", r.output), r.output
    assert "is not a learn.models.Net subclass" in one_line_error(
        invoke("train", "--targets", caches["toy"], "--out", "r2", "--net", "mynets:nn"))


def test_velocity_run_samples_without_fz(caches, tmp_path):
    run = tmp_path / "v"
    r = invoke("train", "--targets", caches["toy"], "--out", run, *TINY, "--steps", 20, "--target", "velocity")
    assert r.exit_code == 0, r.output
    model, record = sample.load_model(run, "raw")
    assert record.net["out"] == 2
    result = sample.sample(model, record, 50, method="heun", steps=10, seed=1)
    assert result.samples.shape == (50, 2) and result.stats["fz_nonpositive"] == 0
    # same seed, same start, same network: the CLI writes the same samples
    r = invoke("sample", "--checkpoint", run / "checkpoint.pt", "--n", 50, "--method", "heun", "--steps", 10,
               "--seed", 1, "--weights", "raw", "-o", tmp_path / "v.npy")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), result.samples)
    # a finished run resumed to the same --steps does nothing
    before = (run / "loss.csv").read_text()
    r = invoke("train", "--targets", caches["toy"], "--out", run, *TINY, "--steps", 20, "--target", "velocity",
               "--resume")
    assert r.exit_code == 0 and (run / "loss.csv").read_text() == before


def test_unet_on_an_image_cache(caches, tmp_path):
    # the unit direction: bounded targets, so 40 steps show the loss falling (the velocity target's
    # pixel-sized, heavy-tailed slopes near the plates do not fall that fast)
    run = tmp_path / "u"
    r = invoke("train", "--targets", caches["digits"], "--out", run, "--hidden", 8, "--emb", 8, "--batch", 64,
               "--steps", 40, "--lr", 3e-3, "--warmup", 5, "--target", "direction")
    assert r.exit_code == 0, r.output
    losses = np.loadtxt(run / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert losses[-10:].mean() < 0.7 * losses[:10].mean()
    model, record = sample.load_model(run)
    assert record.net["kind"] == "unet" and record.net["shape"] == [1, 8, 8]
    result = sample.sample(model, record, 16, steps=10)
    assert result.samples.shape == (16, 64) and np.isfinite(result.samples).all()


def test_default_width_is_the_nets():
    from learn import models

    assert models.spec(64, 64, 6.0, shape=[1, 8, 8])["hidden"] == 32
    assert models.spec(64, 64, 6.0)["hidden"] == 256
    assert models.spec(64, 64, 6.0, hidden=12, shape=[1, 8, 8])["hidden"] == 12


# ---- bad input --------------------------------------------------------------------------------------

def test_bad_input_is_one_line(caches, tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    run = tmp_path / "run"
    assert invoke("train", "--targets", caches["toy"], "--out", run, *TINY, "--steps", 5).exit_code == 0
    ok = np.zeros((10, 2))
    np.save(tmp_path / "ok.npy", ok)
    np.save(tmp_path / "nan.npy", np.full((10, 2), np.nan))
    np.save(tmp_path / "d3.npy", np.zeros((10, 3)))
    cases = [
        (("train", "--targets", caches["odd"], "--out", run, *TINY, "--resume"), "not the cache"),
        (("train", "--targets", tmp_path / "none.h5", "--out", tmp_path / "r1"), "not found"),
        (("train", "--targets", foreign, "--out", tmp_path / "r2"), "not a physfield targets cache"),
        (("train", "--targets", caches["toy"], "--out", run, *TINY), "--resume"),
        (("train", "--targets", caches["toy"], "--out", run, *TINY, "--lr", 0.5, "--resume"), "lr"),
        (("train", "--targets", caches["coulomb"], "--out", tmp_path / "r3", "--target", "velocity"), "not coulomb"),
        (("train", "--targets", caches["toy"], "--out", tmp_path / "r4", "--emb", 7), "even"),
        (("train", "--targets", caches["toy"], "--out", tmp_path / "r6", "--net", "unet"), "image cache"),
        (("sample", "--checkpoint", tmp_path / "nothing", "--n", 5, "-o", tmp_path / "x.npy"), "not found"),
        (("sample", "--checkpoint", garbage, "--n", 5, "-o", tmp_path / "x.npy"), "not a learn checkpoint"),
        (("sample", "--checkpoint", run, "--n", 5, "-o", tmp_path / "x.npy", "--method", "bogus"), "--method"),
        (("sample", "--checkpoint", run, "--n", 5, "-o", tmp_path / "x.npy", "--source", "nope"), "unknown"),
        (("eval", "--samples", tmp_path / "none.npy", "--reference", "moons"), "not found"),
        (("eval", "--samples", garbage, "--reference", "moons"), "not a .npy"),
        (("eval", "--samples", tmp_path / "nan.npy", "--reference", "moons"), "not finite"),
        (("eval", "--samples", tmp_path / "d3.npy", "--reference", "moons"), "dimensional"),
        (("eval", "--samples", tmp_path / "d3.npy", "--reference", "gaussian", "--png", tmp_path / "p.png"), "2-D"),
        (("eval", "--samples", tmp_path / "ok.npy", "--reference", "moons", "--bandwidth", -1), "positive"),
    ]
    if not torch.cuda.is_available():
        cases.append((("train", "--targets", caches["toy"], "--out", tmp_path / "r5", "--device", "cuda"), "CUDA"))
    for args, needle in cases:
        assert needle in one_line_error(invoke(*args)), args


def test_steep_slopes_are_capped_and_counted():
    """A direction net with a tiny positive f_z would throw its lines away (slope 1e6): the slope
    is scaled down to the limit, direction kept, and the stage counted."""
    import torch

    from learn.slope import slope_fn
    from physfield.lines import follow_z as integrate

    class Flat(torch.nn.Module):
        def forward(self, p):
            f = torch.zeros_like(p)
            f[:, 0] = 1e-6
            f[:, 1] = 1.0
            return f

    x = torch.zeros(4, 2)
    end, bad = integrate(slope_fn(Flat(), "direction", limit=3.0), x, 0.0, 2.0, 10, "euler")[:2]
    assert torch.allclose(end[:, 0], torch.full((4,), 6.0)) and torch.all(end[:, 1] == 0)
    assert bad.tolist() == [10] * 4
    free, bad = integrate(slope_fn(Flat(), "direction"), x, 0.0, 2.0, 10, "euler")[:2]
    assert torch.allclose(free[:, 0], torch.full((4,), 2e6)) and bad.sum() == 0


def test_run_record_knows_the_steepest_target(tmp_path):
    """``steepest``: the largest |u_x| / u_z of the cache's targets, the sampler's slope scale."""
    from learn.train import steepest_target

    cache_path = tmp_path / "c.h5"
    tg.generate(pf.StrongField(L=6, sigma0=1, d=0.5), "gaussian", "moons", 256, cache_path, batch=64)
    with pf.targets.open_cache(cache_path) as cache:
        u = cache.targets[:].astype(np.float64)
        expected = (np.linalg.norm(u[:, 1:], axis=1) / u[:, 0]).max()
        assert steepest_target(cache) == pytest.approx(expected)


def test_device_auto_takes_a_gpu_when_torch_sees_one(monkeypatch):
    assert train.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.resolve_device("auto") == "cuda" and train.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.resolve_device("auto") == "cpu"


# ---- learner pieces that a wrong implementation fails (issue: learner tests that can fail) ----------

def test_ema_update_is_the_stated_average():
    """After step ``k`` the EMA is ``d bar + (1 - d) theta`` with ``d = min(ema, (1 + k) / (10 + k))``:
    neither a copy of the weights (``d = 0``) nor the inverted average (``d`` and ``1 - d`` swapped)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = torch.nn.Linear(3, 2).requires_grad_(False)
    before = [p.detach().clone() for p in ema.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = train.TrainConfig("unused", "unused", lr=0.1, ema=0.9, warmup=0, clip=0.0)
    for step, d in ((50, 0.85), (500, 0.9)):  # (1 + k) / (10 + k) = 51/60 below 0.9; then 0.9
        before = [p.detach().clone() for p in ema.parameters()]
        loss = (model(torch.ones(4, 3)) ** 2).sum()
        train.optimise(model, ema, opt, loss, cfg, step)
        for e, b, p in zip(ema.parameters(), before, model.parameters()):
            torch.testing.assert_close(e, d * b + (1 - d) * p.detach(), rtol=1e-6, atol=1e-7)


def test_sampling_uses_the_ema_weights_by_default(caches, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--targets", caches["toy"], "--out", run, "--steps", 30, *TINY).exit_code == 0
    ckpt = train.load_checkpoint(run)
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["ema"])
    got = {}
    for weights in ("default", "ema", "raw"):
        extra = [] if weights == "default" else ["--weights", weights]
        r = invoke("sample", "--checkpoint", run, "--n", 50, "-o", tmp_path / f"{weights}.npy", *extra)
        assert r.exit_code == 0, r.output
        got[weights] = np.load(tmp_path / f"{weights}.npy")
    np.testing.assert_array_equal(got["default"], got["ema"])
    assert not np.allclose(got["ema"], got["raw"])
    model, _ = sample.load_model(run)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["ema"][k])


def velocity_run(L, D=2):
    """A run record of a velocity net on a strong-field cache (what ``learn.train`` writes)."""
    return run_record(pf.StrongField(L), "velocity", target="moons", dim=D)


@pytest.mark.parametrize("L", [1.0, 6.0, 40.0])
def test_velocity_sampler_moves_lines_by_v_over_the_normalised_time(L):
    """``learn sample`` of a velocity net ``dx/dt = v`` (``t = z / L``) moves every sample by ``v (L -
    eps) / L``: the sampler divides by ``L`` once, whatever ``L``."""

    class ConstantVelocity(torch.nn.Module):
        def forward(self, p):
            return torch.tensor([1.5, -2.0], dtype=p.dtype).expand(len(p), -1)

    run = velocity_run(L)
    result = sample.sample(ConstantVelocity(), run, 64, steps=10, method="heun")
    eps = run.eps
    np.testing.assert_allclose(result.samples, result.inputs + np.array([1.5, -2.0]) * (L - eps) / L, atol=1e-5)


def test_mmd_is_its_closed_form():
    """Two single points at distance r, bandwidth h: MMD^2 = 2 - 2 exp(-r^2 / (2 h^2)); several
    bandwidths average the kernels."""
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    for h in (2.0, 5.0, 10.0):
        assert evaluate.mmd(a, b, [h])[0] == pytest.approx(np.sqrt(2 - 2 * np.exp(-25 / (2 * h * h))), rel=1e-12)
    both = 2 - np.exp(-25 / 8) - np.exp(-25 / 50)
    assert evaluate.mmd(a, b, [2.0, 5.0])[0] == pytest.approx(np.sqrt(both), rel=1e-12)


def test_evaluate_compares_the_samples_with_the_reference():
    x = pdata.sample("moons", 300, seed=0) + [0.3, -0.4]
    report, samples, ref = evaluate.evaluate(x, "moons", n=300, seed=0)
    assert report["mmd"] == pytest.approx(evaluate.mmd(samples, ref)[0], rel=1e-12) and report["mmd"] > 0.05
    same, _, _ = evaluate.evaluate(pdata.sample("moons", 300, seed=0), "moons", n=300, seed=0)
    assert same["mmd"] == pytest.approx(0.0, abs=1e-6) and same["w2"] == pytest.approx(0.0, abs=1e-9)
