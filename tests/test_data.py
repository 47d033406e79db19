"""physfield.data: every source has its documented shape, geometry and moments, is reproducible
by seed, and every bad spec or file is a one-line ValueError naming the problem."""

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits

import physfield as pf
from physfield import data

SPECS = {  # spec -> dimension
    "gaussian": 2,
    "gaussian:5": 5,
    "8gaussians": 2,
    "moons": 2,
    "circles": 2,
    "swissroll": 2,
    "checkerboard": 2,
    "mixture": 2,
    "digits": 64,
    "digits:2": 64,
}
N = 20_000  # samples for the moment checks: standard errors ~ 1 / sqrt(N) < 0.01 per unit of std


def raises(match, call, *args, **kwargs):
    """``call`` raises a one-line ValueError whose message contains ``match``."""
    with pytest.raises(ValueError, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_every_named_source_is_listed():
    assert set(data.names()) == {s.partition(":")[0] for s in SPECS}


@given(spec=st.sampled_from(sorted(SPECS)), n=st.integers(1, 400), seed=st.integers(0, 2**32))
def test_shape_dtype_finite_and_reproducible(spec, n, seed):
    x = data.sample(spec, n, seed=seed)
    assert x.shape == (n, SPECS[spec]) and x.dtype == np.float64 and x.flags.c_contiguous
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x, data.sample(spec, n, seed=seed, dim=SPECS[spec]))
    assert not np.array_equal(data.sample(spec, 50, seed=seed), data.sample(spec, 50, seed=seed + 1))


@given(dim=st.integers(1, 64), n=st.integers(1, 100))
def test_gaussian_takes_any_dimension(dim, n):
    assert data.sample("gaussian", n, dim=dim).shape == (n, dim)
    np.testing.assert_array_equal(data.sample(f"gaussian:{dim}", n), data.sample("gaussian", n, dim=dim))


def test_shape_is_the_image_shape():
    assert data.shape("digits") == data.shape("digits:7") == (1, 8, 8)
    assert all(data.shape(s) is None for s in SPECS if not s.startswith("digits"))


def test_gaussian_moments():
    x = data.sample("gaussian", N, dim=3)
    np.testing.assert_allclose(x.mean(0), 0, atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), np.eye(3), atol=0.04)


def test_8gaussians_sit_on_the_eight_centres():
    x = data.sample("8gaussians", N)
    angles = np.arange(8) * np.pi / 4
    centres = 4.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    dist2 = ((x[:, None, :] - centres) ** 2).sum(-1)
    mode = dist2.argmin(1)
    np.testing.assert_allclose(np.bincount(mode, minlength=8) / N, 1 / 8, atol=0.01)
    # offset from the nearest centre ~ N(0, 0.4^2 I): mean |offset|^2 = 2 * 0.16
    assert abs(dist2.min(1).mean() - 0.32) < 0.02
    np.testing.assert_allclose(x.mean(0), 0, atol=0.06)
    np.testing.assert_allclose(np.cov(x.T), (8 + 0.16) * np.eye(2), atol=0.3)


def test_moons_lie_on_two_arcs_of_radius_2():
    x = data.sample("moons", N)
    upper = np.abs(np.linalg.norm(x - [-1.0, -0.5], axis=1) - 2.0)  # centre of the upper arc
    lower = np.abs(np.linalg.norm(x - [1.0, 0.5], axis=1) - 2.0)
    off = np.minimum(upper, lower)
    assert 0.05 < np.sqrt((off**2).mean()) < 0.11  # noise std 0.1 (the min shrinks it a little)
    assert abs((upper < lower).mean() - 0.5) < 0.02
    np.testing.assert_allclose(x.mean(0), 0, atol=0.05)
    assert np.abs(x[:, 0]).max() < 3.6 and np.abs(x[:, 1]).max() < 2.1


def test_circles_have_radii_4_and_2():
    r = np.linalg.norm(data.sample("circles", N), axis=1)
    outer = r > 3.0
    assert abs(outer.mean() - 0.5) < 0.02
    assert abs(np.sqrt(((r[outer] - 4.0) ** 2).mean()) - 0.1) < 0.01
    assert abs(np.sqrt(((r[~outer] - 2.0) ** 2).mean()) - 0.1) < 0.01


def test_swissroll_follows_its_spiral():
    x = data.sample("swissroll", N)
    r = np.linalg.norm(x, axis=1)
    assert r.min() > np.pi / 2 - 0.5 and r.max() < 1.5 * np.pi + 0.5
    t = 3.0 * r  # the spiral is r = t / 3 at angle t
    residual = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - t)))
    assert np.median(np.abs(residual)) < 0.3  # 0.1 noise on r is 0.3 on t; uniform angles give pi/2
    np.testing.assert_allclose(x.mean(0), [2 / 3, 2 / (9 * np.pi)], atol=0.05)


def test_checkerboard_fills_the_even_squares():
    x = data.sample("checkerboard", N)
    assert x.min() >= -4.0 and x.max() <= 4.0
    cell = np.floor((x + 4.0) / 2.0).astype(int)
    assert (cell.sum(1) % 2 == 0).all()
    counts = np.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16)
    np.testing.assert_allclose(counts[counts > 0] / N, 1 / 8, atol=0.01)
    assert (counts > 0).sum() == 8
    np.testing.assert_allclose(x.mean(0), 0, atol=0.05)


def test_mixture_weights_and_mean():
    x = data.sample("mixture", N)
    means = data.MIXTURE["means"]
    k = ((x[:, None, :] - means) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(np.bincount(k, minlength=3) / N, data.MIXTURE["weights"], atol=0.015)
    np.testing.assert_allclose(x.mean(0), [-0.5, -0.6], atol=0.05)
    np.testing.assert_allclose(x[k == 0].std(0), data.MIXTURE["stds"][0], rtol=0.1)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data / 8.0 - 1.0, d.target


def row_ids(rows, table):
    """Index in ``table`` of each row of ``rows`` (-1 when a row is not there)."""
    match = (rows[:, None, :] == table[None, :, :]).all(-1)
    return np.where(match.any(1), match.argmax(1), -1)


@pytest.mark.parametrize("label", [2, 3])
def test_digits_class_filter(digits, label):
    table, target = digits
    mine = table[target == label]
    x = data.sample(f"digits:{label}", len(mine), seed=4)
    ids = row_ids(x, table)
    assert (ids >= 0).all() and (target[ids] == label).all()
    assert len(np.unique(ids)) == len(mine)  # n <= available: every image exactly once
    more = data.sample(f"digits:{label}", 3 * len(mine), seed=4)  # n > available: with replacement
    assert (target[row_ids(more, table)] == label).all()


def test_digits_range_and_all_classes(digits):
    table, target = digits
    x = data.sample("digits", 600, seed=1)
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal((x + 1.0) * 8.0, np.round((x + 1.0) * 8.0))  # 17 grey levels
    assert len(np.unique(target[row_ids(x, table)])) == 10


def test_npy_round_trip(tmp_path):
    table = np.random.default_rng(0).normal(size=(40, 3))
    path = tmp_path / "points.npy"
    np.save(path, table)
    x = data.sample(str(path), 40, seed=2)
    np.testing.assert_array_equal(np.sort(row_ids(x, table)), np.arange(40))
    assert (row_ids(data.sample(str(path), 100, seed=2), table) >= 0).all()
    assert data.shape(str(path)) is None
    raises("3-dimensional", data.sample, str(path), 5, dim=2)


def test_npy_images_are_flattened(tmp_path):
    images = np.arange(5 * 2 * 3 * 4, dtype=np.uint8).reshape(5, 2, 3, 4)
    path = str(tmp_path / "images.npy")
    np.save(path, images)
    x = data.sample(path, 5, seed=0)
    assert x.shape == (5, 24) and x.dtype == np.float64 and data.shape(path) == (2, 3, 4)
    np.testing.assert_array_equal(np.sort(row_ids(x, images.reshape(5, 24).astype(float))), np.arange(5))


def test_h5_round_trip(tmp_path):
    table = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    path = tmp_path / "store.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("group/x", data=table)
        f.create_dataset("img", data=np.zeros((6, 1, 2, 2)))
    x = data.sample(f"{path}:group/x", 30, seed=3)
    np.testing.assert_array_equal(np.sort(row_ids(x, table.astype(np.float64))), np.arange(30))
    assert data.shape(f"{path}:img") == (1, 2, 2) and data.sample(f"{path}:img", 2).shape == (2, 4)
    raises("no dataset 'y'; it has: group/x, img", data.sample, f"{path}:y", 3)
    raises("no dataset 'group'", data.sample, f"{path}:group", 3)
    raises("no dataset ''", data.sample, f"{path}:", 3)
    raises("needs a dataset", data.sample, str(path), 3)


@pytest.mark.parametrize(
    "spec, kwargs, match",
    [
        ("swissrol", {}, "unknown data source 'swissrol'"),
        ("", {}, "non-empty string"),
        (None, {}, "non-empty string"),
        ("moons", {"dim": 3}, "'moons' is 2-dimensional, but dim=3"),
        ("digits", {"dim": 2}, "'digits' is 64-dimensional"),
        ("gaussian:3", {"dim": 4}, "3-dimensional, but dim=4"),
        ("gaussian:0", {}, "gaussian dimension"),
        ("gaussian:x", {}, "gaussian dimension"),
        ("gaussian", {"dim": 0}, "gaussian dimension"),
        ("moons:2", {}, "moons takes no"),
        ("digits:x", {}, "digits class"),
        ("digits:10", {}, "digits class"),
        ("digits:", {}, "digits class"),
        ("gaussian", {"n": 0}, "n must be a positive integer"),
        ("gaussian", {"n": 2.5}, "n must be a positive integer"),
        ("gaussian", {"n": True}, "n must be a positive integer"),
        ("gaussian", {"seed": -1}, "seed"),
        ("gaussian", {"seed": "x"}, "seed"),
        ("missing.npy", {}, "not found: missing.npy"),
        ("missing.h5:x", {}, "not found: missing.h5"),
    ],
)
def test_bad_specs(spec, kwargs, match):
    raises(match, data.sample, spec, **{"n": 10, **kwargs})


def write_npy(path, value):
    np.save(path, value)


def write_h5(path, value):
    with h5py.File(path, "w") as f:
        f["x"] = value


@pytest.mark.parametrize("write, suffix", [(write_npy, ".npy"), (write_h5, ".h5:x")])
@pytest.mark.parametrize(
    "value, match",
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros((4, 0)), "empty"),
        (np.array([[1.0, np.nan]]), "NaN or Inf"),
        (np.array([[1.0], [np.inf]]), "NaN or Inf"),
        (np.array([[b"a", b"b"]]), "numeric"),
        (np.array([True, False])[:, None], "numeric"),
        (np.arange(5.0), "one sample per row"),
    ],
)
def test_bad_user_arrays(tmp_path, write, suffix, value, match):
    spec = str(tmp_path / "bad") + suffix
    write(spec.partition(":")[0], value)
    raises(match, data.sample, spec, 3)
    raises(match, data.shape, spec)


def test_unreadable_files(tmp_path):
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    raises("cannot read .*junk.npy as .npy", data.sample, str(junk), 3)
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([[{}]], dtype=object), allow_pickle=True)
    raises("cannot read .*objects.npy", data.sample, str(pickled), 3)
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5")
    raises("cannot read .*fake.h5 as HDF5", data.sample, f"{fake}:x", 3)


@pytest.mark.parametrize("source,target,dim,want", [
    ("gaussian", "digits", None, 64), ("digits:3", "gaussian", None, 64), ("gaussian", "moons", None, 2),
    ("gaussian", "gaussian", None, 2), ("gaussian", "gaussian:5", None, 5), ("gaussian:4", "gaussian", None, 4),
    ("gaussian", "digits", 64, 64)])
def test_a_bare_gaussian_takes_the_other_sides_dimension(source, target, dim, want):
    ds, dt = data.pair_dims(source, target, dim)
    assert data.sample(source, 3, dim=ds).shape[1] == data.sample(target, 3, dim=dt).shape[1] == want


USER_SOURCE = '''
import numpy as np

from physfield.data import Source


class Ring(Source):
    """The circle of radius ARG (default 1), labelled by half plane: a data source in one class."""

    name, dim, classes = "ring", 2, 2

    def __init__(self, arg=None):
        self.radius = 1.0 if arg is None else float(arg)

    def draw(self, n, rng, labels=None):
        k = rng.integers(0, 2, n) if labels is None else labels
        t = np.pi * (k + rng.random(n))
        return self.radius * np.stack([np.cos(t), np.sin(t)], axis=1), k

    def log_density(self, x):
        return np.where(np.isclose(np.linalg.norm(x, axis=1), self.radius), 0.0, -np.inf)


class Wrong(Source):
    name, dim = "wrong", 3

    def draw(self, n, rng, labels=None):
        return np.zeros((n, 2))
'''


def test_a_user_source_runs_through_the_commands(tmp_path, monkeypatch):
    """``--source module:Class[:ARG]`` reaches a user's own :class:`physfield.data.Source` as a
    registered name: its samples, argument, labels and density in Python, the cache that records
    its spec, and ``physfield trace`` over it; a source that draws the wrong shape is refused."""
    import json

    from click.testing import CliRunner

    from cli import physfield as physfield_cli

    def invoke(*args):
        return CliRunner().invoke(physfield_cli, [str(a) for a in args])

    monkeypatch.chdir(tmp_path)
    (tmp_path / "myring.py").write_text(USER_SOURCE)
    x, y = data.sample_labelled("myring:Ring:2.5", 50, seed=3)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.5)
    assert ((x[:, 1] >= 0) == (y == 0)).all() and data.classes("myring:Ring") == (2, (0, 1))
    assert np.isfinite(data.log_density("myring:Ring:2.5", x)).all()
    done = invoke("targets", "--field", "strong", "--source", "myring:Ring:2.5", "--target", "moons",
                  "--n", 40, "--batch", 16, "--conditional", "-o", "c.h5")
    assert done.exit_code == 0, done.output
    with pf.targets.open_cache(tmp_path / "c.h5", verify=True) as cache:
        assert cache.attrs["source"] == "myring:Ring:2.5"
    done = invoke("trace", "--field", "strong", "--source", "myring:Ring", "--target", "moons", "--n", 24, "--lines", 16, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["runs"][0]["arrived"] == 1.0
    raises(r"drew shape \(3, 2\), not \(3, 3\)", data.sample, "myring:Wrong", 3)
    raises("is not a physfield.data.Source subclass", data.sample, "myring:np", 3)
    raises("cannot import 'nowhere'", data.sample, "nowhere:Ring", 3)
