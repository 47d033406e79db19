"""Labels through the physics side: labelled data, within-class plans, conditional caches whose
targets are each class's own field, labels that travel with their sinks whatever the plan."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import physfield as pf
from physfield import data, plans
from physfield.targets import generate, open_cache, sampler

STRONG = pf.StrongField(L=6.0, sigma0=1.0)
LABELLED = ("8gaussians", "moons", "circles", "checkerboard", "mixture", "digits", "digits:2,3")


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# data -------------------------------------------------------------------------------------------


@given(spec=st.sampled_from(LABELLED), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_labelled_samples_are_the_plain_samples_with_their_class(spec, n, seed):
    x, y = data.sample_labelled(spec, n, seed=seed)
    assert np.array_equal(x, data.sample(spec, n, seed=seed))  # labels add nothing to the draw
    n_classes, present = data.classes(spec)
    assert y.dtype == np.int64 and y.shape == (n,) and set(y.tolist()) <= set(present)
    assert max(present) < n_classes


def test_labels_name_the_component_a_sample_came_from():
    x, y = data.sample_labelled("8gaussians", 4000, seed=1)
    centres = 4.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
    nearest = np.argmin(((x[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(nearest == y) > 0.999  # std 0.4, centres 3.06 apart
    x, y = data.sample_labelled("moons", 2000, seed=2)  # upper moon y >= -1/2, lower y <= 1/2, noise 0.1
    assert np.all(x[y == 0, 1] > -0.5 - 0.5) and np.all(x[y == 1, 1] < 0.5 + 0.5)
    assert np.mean(x[y == 0, 1] > 0.5) > 0.5 and np.mean(x[y == 1, 1] < -0.5) > 0.5
    x, y = data.sample_labelled("circles", 2000, seed=3)
    r = np.linalg.norm(x, axis=1)
    assert np.all((r > 3) == (y == 0))
    x, y = data.sample_labelled("checkerboard", 2000, seed=4)
    i, j = np.floor((x + 4) / 2).astype(int).T
    assert np.array_equal(y, 2 * i + j // 2) and np.all((i + j) % 2 == 0)
    rows, target = data.rows._all_digits()
    x, y = data.sample_labelled("digits:2,3", 300, seed=5)
    match = (x[:, None, :] == rows[None]).all(axis=2)
    assert np.all(match.any(axis=1)) and np.all(target[match.argmax(axis=1)] == y) and set(y.tolist()) == {2, 3}


@given(spec=st.sampled_from(LABELLED[:-1]), n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_asked_labels_are_drawn_class_by_class(spec, n, seed):
    _, want = data.sample_labelled(spec, n, seed=seed)
    x, y = data.sample_labelled(spec, n, seed=seed + 1, labels=want)
    assert np.array_equal(y, want)
    if spec == "8gaussians":  # each x is a sample of its class
        centres = 4.0 * np.stack([np.cos(want * np.pi / 4), np.sin(want * np.pi / 4)], axis=1)
        assert np.all(np.linalg.norm(x - centres, axis=1) < 0.4 * 6)


def test_label_errors_are_one_line():
    one_line_error(lambda: data.sample_labelled("swissroll", 3), "has no labels")
    one_line_error(lambda: data.sample_labelled("gaussian", 3), "has no labels")
    one_line_error(lambda: data.sample_labelled("digits:3", 2, labels=np.array([3, 2])), "has no class 2")
    one_line_error(lambda: data.sample("digits:2,x", 2), "digits 0..9")
    assert data.classes("swissroll") is None and data.classes("digits:7") == (10, (7,))


def test_log_density_is_normalised_and_refuses_others():
    g = np.linspace(-12, 12, 801)
    X, Y = np.meshgrid(g, g)
    pts = np.column_stack([X.ravel(), Y.ravel()])
    for spec in ("gaussian", "8gaussians", "mixture"):
        mass = np.exp(data.log_density(spec, pts)).sum() * (g[1] - g[0]) ** 2
        assert abs(mass - 1) < 1e-3, spec
    one_line_error(lambda: data.log_density("moons", pts), "no closed-form density")
    one_line_error(lambda: data.log_density("gaussian:3", pts), "dimension")


# within-class plans ------------------------------------------------------------------------------


@given(n=st.integers(1, 40), k=st.integers(1, 4), plan=st.sampled_from(plans.names()), seed=st.integers(0, 2**32 - 1))
def test_within_class_plans_never_cross_classes_and_keep_the_marginals(n, k, plan, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    A, Q = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 3
    sink_labels = rng.permutation(labels)  # as many sinks as sources in every class
    pi = plans.within_class(plan, A, Q, labels, sink_labels)
    assert np.all(pi[labels[:, None] != sink_labels[None, :]] == 0)
    assert np.allclose(pi.sum(axis=1), 1 / n) and np.allclose(pi.sum(axis=0), 1 / n)
    for c in np.unique(labels):  # each block is the named plan of its class
        rows, cols = labels == c, sink_labels == c
        block = plans.resolve(plan, A[rows], Q[cols])
        block = block.toarray() if hasattr(block, "toarray") else block
        assert np.allclose(pi[np.ix_(rows, cols)], block * rows.sum() / n)


def test_within_class_needs_a_sink_of_every_source_class():
    one_line_error(lambda: plans.within_class("optimal", np.zeros((2, 1)), np.zeros((2, 1)), [0, 1], [0, 0]),
                   "class 1 has 1 sources but no sink")


# conditional caches -----------------------------------------------------------------------------


def batch_labels(run, k):
    """The sinks' labels of batch ``k`` drawn again from the run's seeds (as the sampler draws them)."""
    src_seed, snk_seed, _ = np.random.SeedSequence([run.seed, k]).spawn(3)
    if run.within_class:
        _, ya = data.sample_labelled(run.source, run.B, seed=src_seed, dim=run.dim)
        return ya, data.sample_labelled(run.target, run.B, seed=snk_seed, dim=run.dim, labels=ya)[1]
    yq = data.sample_labelled(run.target, run.B, seed=snk_seed, dim=run.dim)[1]
    return yq, yq  # source i takes the class of sink i


@given(B=st.integers(2, 24), plan=st.sampled_from(plans.names()), within=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_each_point_carries_its_sinks_label_and_that_classs_field(B, plan, within, seed):
    source, target = ("mixture", "mixture") if within else ("gaussian", "8gaussians")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "c.h5"
        generate(STRONG, source, target, 2 * B, out, batch=B, plan=plan, seed=seed, store_pairs=True,
                 conditional=True, within_class=within)
        run = sampler.make_run(STRONG, source, target, B, plan, 0.05, None, None, None, None, seed, None, "auto",
                               True, True, within)
        with open_cache(out, verify=True) as c:
            assert c.conditional and c.n_classes == (3 if within else 8)
            labels, partner = c.labels[()], c.pairs["partner"][()]
            for k in range(2):
                rows = slice(k * B, (k + 1) * B)
                ya, yq = batch_labels(run, k)
                assert np.array_equal(labels[rows], yq[partner[rows]])  # the label travels with the sink
                A, Q, pi = c.pairs["sources"][k], c.pairs["sinks"][k], c.pairs["plan"][k]
                assert np.array_equal(ya, yq) and np.all(pi[ya[:, None] != yq[None, :]] == 0)  # within class
                assert np.allclose(pi.sum(axis=1), 1 / B) and np.allclose(pi.sum(axis=0), 1 / B)
                P = c.points[rows].astype(np.float64)
                E_full = np.zeros_like(P)
                for cl in np.unique(yq):  # superposition: E = sum_c pi(J_c) E(. | c)
                    cols = yq == cl
                    mass = pi[:, cols].sum()
                    if mass == 0:
                        continue
                    u, ln = STRONG.direction(P, A, Q[cols], plan=pi[:, cols] / mass, backend="numpy")
                    mine = labels[rows] == cl
                    assert np.max(np.abs(c.targets[rows][mine] - u[mine]), initial=0) < 1e-6
                    assert np.allclose(c.log_norm[rows][mine], ln[mine], rtol=1e-9, atol=1e-9)
                    E_full += mass * np.exp(ln)[:, None] * u
                u, ln = STRONG.direction(P, A, Q, plan=pi, backend="numpy")
                assert np.allclose(E_full, np.exp(ln)[:, None] * u, rtol=1e-7, atol=1e-12)


def test_conditional_cache_schema_resume_and_shards(tmp_path):
    kw = dict(batch=32, seed=3, conditional=True)
    one = tmp_path / "one.h5"
    generate(STRONG, "gaussian", "digits", 100, one, **kw)
    part = tmp_path / "part.h5"
    generate(STRONG, "gaussian", "digits", 50, part, **kw)
    generate(STRONG, "gaussian", "digits", 100, part, resume=True, **kw)
    sharded = tmp_path / "sharded.h5"
    generate(STRONG, "gaussian", "digits", 100, sharded, engine=pf.targets.engines.Local(), shard_points=64, **kw)
    with open_cache(one, verify=True) as a, open_cache(part, verify=True) as b, open_cache(sharded, verify=True) as s:
        assert a.attrs["conditional"] is True and a.attrs["n_classes"] == 10 and "within_class" not in a.attrs
        assert a.labels.dtype == np.int32 and a.labels.shape == (100,)
        for name in ("points", "targets", "labels"):
            assert np.array_equal(a.file[name][()], b.file[name][()])
            assert np.array_equal(a.file[name][()], s.file[name][()])
    plain = tmp_path / "plain.h5"
    generate(STRONG, "gaussian", "digits", 100, plain, batch=32, seed=3)
    with open_cache(plain) as p, open_cache(one) as a:
        assert p.labels is None and p.n_classes is None and not p.conditional and "conditional" not in p.attrs
        assert np.array_equal(p.points[:, 0], a.points[:, 0])  # same draws; the pairs are per class
        assert not np.allclose(p.points[()], a.points[()]) and not np.allclose(p.targets[()], a.targets[()])
    one_line_error(lambda: generate(STRONG, "gaussian", "digits", 120, plain, batch=32, seed=3, resume=True,
                                    conditional=True), "attribute conditional")


def test_damaged_labels_are_refused(tmp_path):
    out = tmp_path / "c.h5"
    generate(STRONG, "gaussian", "moons", 40, out, batch=8, conditional=True)
    with h5py.File(out, "r+") as f:
        f["labels"][3] = 2
    one_line_error(lambda: open_cache(out, verify=True), "bad value in labels at row 3")
    with h5py.File(out, "r+") as f:
        del f["labels"]
    one_line_error(lambda: open_cache(out), "missing dataset 'labels'")


@pytest.mark.parametrize("source,target,kw,match", [
    ("gaussian", "swissroll", {"conditional": True}, "need a labelled target"),
    ("gaussian", "digits", {"within_class": True}, "within-class plans need labelled sources"),
    ("digits:2", "digits:3", {"within_class": True}, "holds class 2, which target"),
    ("8gaussians", "moons", {"within_class": True}, "8 classes but target 'moons' 2"),
])
def test_bad_label_runs_are_one_line_errors(tmp_path, source, target, kw, match):
    one_line_error(lambda: generate(STRONG, source, target, 10, tmp_path / "x.h5", **kw), match)
    assert not list(tmp_path.iterdir())
