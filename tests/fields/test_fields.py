"""The field protocol: registry, parameters, user fields (Gaussian paths of any profile, pair
fields), and every field's ``bind`` / ``direction`` / ``field`` on every backend.

The per-pair sums here are written from the formula (a loop over the plan's pairs), not from
the package's code.
"""

import subprocess
import sys
import textwrap

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import physfield as pf
from cli import physfield as physfield_cli
from physfield import fields
from tests.helpers import one_line_error


def bridge(width, L):
    """A sine bridge ``sigma = width sin(pi z / L)`` and its derivative (a proper profile)."""
    return lambda z: (width * np.sin(np.pi * z / L), width * np.pi / L * np.cos(np.pi * z / L))


def gaussian_path_sum(P, A, B, pi, L, profile):
    """``E = sum_ij pi_ij N(x; c_ij(z), sigma^2 I) (1, (b - a)/L + s (x - c_ij))``, pair by pair."""
    E = np.zeros(P.shape)
    for p, (z, *x) in enumerate(P):
        if not 0 < z < L:
            continue
        sigma, dsigma = (float(np.ravel(v)[0]) for v in profile(np.array([z])))
        for i, j in zip(*np.nonzero(pi)):
            c = A[i] + z / L * (B[j] - A[i])
            phi = np.exp(-((np.array(x) - c) ** 2).sum() / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** (A.shape[1] / 2)
            E[p] += pi[i, j] * phi * np.concatenate([[1.0], (B[j] - A[i]) / L + dsigma / sigma * (np.array(x) - c)])
    return E


def random_plan(rng, n, m):
    pi = rng.random((n, m)) ** 3 * (rng.random((n, m)) < 0.7)  # non-uniform, with zeros
    pi.flat[rng.integers(pi.size)] += 0.5
    return pi / pi.sum()


def near_strings(rng, A, B, pi, L, profile, n):
    i, j = np.unravel_index(rng.choice(pi.size, n, p=pi.ravel()), pi.shape)
    z = rng.uniform(0.02 * L, 0.98 * L, n)
    sigma = profile(z)[0]
    x = A[i] + (z / L)[:, None] * (B[j] - A[i]) + sigma[:, None] * rng.standard_normal((n, A.shape[1]))
    return np.column_stack([z, x])


# registry and parameters ---------------------------------------------------------------------

def test_registry_names_and_module_class_specs():
    assert {"strong", "coulomb"} <= set(fields.names())
    assert fields.get("strong") is pf.StrongField and fields.get("coulomb") is pf.CoulombField
    assert fields.get("physfield.fields.strong:StrongField") is pf.StrongField
    assert pf.StrongField.spec() == "strong"
    assert pf.GaussianPathField.spec() == "physfield.fields.gaussian_path:GaussianPathField"


@pytest.mark.parametrize("field", [pf.StrongField(L=4.0, sigma0=0.7, d=1.5), pf.CoulombField(L=3.0)])
def test_params_rebuild_the_field(field):
    again = fields.from_params(field.params())
    assert type(again) is type(field) and again.params() == field.params()


@pytest.mark.parametrize("spec, params, match", [
    ("magnetic", {}, "unknown field 'magnetic'"),
    ("strong", {"width": 1.0}, "field strong takes no parameter 'width' .its parameters: L, sigma0, d."),
    ("coulomb", {"sigma0": 1.0}, "takes no parameter 'sigma0'"),
    ("no_such_module_here:Field", {}, "cannot import 'no_such_module_here'"),
    ("physfield.fields.strong:Nothing", {}, "has no 'Nothing'"),
    ("physfield.plans:paired", {}, "not a physfield field class"),
])
def test_bad_field_specs_are_one_line_errors(spec, params, match):
    with pytest.raises(ValueError, match=match) as info:
        fields.build(spec, **params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("sigma, dsigma", [(0.0, 0.0), (-1.0, 0.0), (np.nan, 0.0), (np.inf, 0.0), (1.0, np.nan),
                                           (1.0, np.inf), (1e-320, 1.0)])
def test_bad_profile_is_a_one_line_error(sigma, dsigma):
    """A width that is not positive and finite, or a slope ``s = sigma'/sigma`` that is not
    finite (including one that overflows), is refused in one line, without a NumPy warning."""
    bad = pf.GaussianPathField(L=2.0, profile=lambda z: (np.full_like(z, sigma), np.full_like(z, dsigma)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="sigma > 0"):
            bad.direction(np.array([[1.0, 0.0], [0.5, 0.1]]), np.zeros((1, 1)), np.ones((1, 1)))


def test_profile_must_be_callable():
    with pytest.raises(ValueError, match="callable"):
        pf.GaussianPathField(L=2.0, profile=3.0)


# Gaussian paths ------------------------------------------------------------------------------

def test_strong_field_is_its_profile_as_a_gaussian_path(backend):
    """``StrongField`` = ``GaussianPathField`` with the same profile, bit for bit: the family
    runs on the same kernels."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 1
    strong = pf.StrongField(L=3.0, sigma0=0.8, d=0.7)
    path = pf.GaussianPathField(L=3.0, profile=strong.profile)
    pi = random_plan(rng, 5, 5)
    P = near_strings(rng, A, B, pi, 3.0, strong.profile, 40)
    for plan in (pi, "paired", "independent"):
        want = strong.direction(P, A, B, plan=plan, backend=backend, return_ess=True)
        got = path.direction(P, A, B, plan=plan, backend=backend, return_ess=True)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)


@given(seed=st.integers(0, 2**32 - 1), D=st.integers(1, 3), N=st.integers(1, 5), M=st.integers(1, 5),
       width=st.floats(0.3, 1.2), sparse=st.booleans())
def test_any_profile_equals_the_per_pair_sum(backend, seed, D, N, M, width, sparse):
    rng = np.random.default_rng(seed)
    L = 2.5
    profile = bridge(width, L)
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D))
    pi = random_plan(rng, N, M)
    P = near_strings(rng, A, B, pi, L, profile, 12)
    want = gaussian_path_sum(P, A, B, pi, L, profile)
    field = pf.GaussianPathField(L=L, profile=profile)
    got = field.field(P, A, B, plan=sp.csr_array(pi) if sparse else pi, backend=backend)
    scale = np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=1e-10)


# pair fields ---------------------------------------------------------------------------------

class StrongPairs(pf.PairField):
    """The strong field's pair, written as a user would: the formula of the README."""

    def __init__(self, L=6.0, sigma0=1.0, d=0.5):
        super().__init__(L)
        self.sigma0, self.d = sigma0, d

    def pair(self, z, x, a, b):
        k = np.pi / (2 * self.d)
        sigma = self.sigma0 * np.where(z < self.d, np.sin(k * z),
                                       np.where(z > self.L - self.d, np.sin(k * (self.L - z)), 1.0))
        dsigma = self.sigma0 * k * np.where(z < self.d, np.cos(k * z),
                                            np.where(z > self.L - self.d, -np.cos(k * (self.L - z)), 0.0))
        c = a + (z / self.L)[:, None] * (b - a)
        D = x.shape[1]
        phi = np.exp(-((x - c) ** 2).sum(axis=1) / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** (D / 2)
        inside = (z > 0) & (z < self.L)
        v = (b - a) / self.L + (dsigma / sigma)[:, None] * (x - c)
        return np.where(inside[:, None], phi[:, None] * np.column_stack([np.ones_like(z), v]), 0.0)


@given(seed=st.integers(0, 2**32 - 1), D=st.integers(1, 3), N=st.integers(1, 5), M=st.integers(1, 5))
def test_pair_field_superposes_over_any_plan(seed, D, N, M):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(N, D)), rng.normal(size=(M, D))
    pi = random_plan(rng, N, M)
    strong = pf.StrongField(L=3.0, sigma0=0.9, d=1.0)
    user = StrongPairs(L=3.0, sigma0=0.9, d=1.0)
    P = near_strings(rng, A, B, pi, 3.0, strong.profile, 10)
    u_want, log_want = strong.direction(P, A, B, plan=pi, backend="numpy")
    u, log_norm = user.direction(P, A, B, plan=pi)
    np.testing.assert_allclose(u, u_want, atol=1e-9)
    np.testing.assert_allclose(log_norm, log_want, rtol=1e-9)
    assert user.params() == {"kind": f"{__name__}:StrongPairs", "L": 3.0, "sigma0": 0.9, "d": 1.0}


def test_pair_field_that_returns_a_wrong_shape_is_an_error():
    class Flat(pf.PairField):
        def pair(self, z, x, a, b):
            return np.ones((len(z), 1))

    with pytest.raises(ValueError, match="returned shape"):
        Flat(L=1.0).direction(np.array([[0.5, 0.0, 0.0]]), np.zeros((2, 2)), np.ones((2, 2)), plan="paired")


# the command line ----------------------------------------------------------------------------

USER_FIELD = '''
import numpy as np
import physfield as pf


class Bridge(pf.GaussianPathField):
    """Gaussian paths with a sine-bridge width."""

    def __init__(self, L=6.0, width=0.5):
        super().__init__(L)
        self.width = float(width)

    def profile(self, z):
        w = np.pi / self.L
        return self.width * np.sin(w * z), self.width * w * np.cos(w * z)
'''


def test_cli_takes_a_user_field_class_and_its_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "userfields.py").write_text(textwrap.dedent(USER_FIELD))
    runner = CliRunner()
    out = tmp_path / "c.h5"
    result = runner.invoke(physfield_cli, ["targets", "--field", "userfields:Bridge", "--param", "width=0.3",
                                           "--n", "20", "--batch", "10", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with pf.targets.open_cache(out) as cache:
        assert cache.field_params == {"kind": "userfields:Bridge", "L": 6.0, "width": 0.3}
    bad = runner.invoke(physfield_cli, ["targets", "--field", "userfields:Bridge", "--param", "sigma0=1",
                                        "--n", "20", "-o", str(tmp_path / "d.h5")])
    assert "takes no parameter 'sigma0' (its parameters: L, width)" in one_line_error(bad)


# the numba kernel cache ----------------------------------------------------------------------

@pytest.mark.slow
def test_numba_kernels_are_rebuilt_when_their_row_bodies_change(tmp_path):
    """An edit of ``rows.py`` alone (its wrappers in ``numba_cpu.py`` unchanged) is compiled, not
    served from numba's on-disk cache."""
    import shutil

    shutil.copytree(pf.__path__[0], tmp_path / "physfield", ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import numpy as np\nfrom physfield.kernels import numba_cpu\n"
              "out = np.empty((1, 1))\nnumba_cpu.sq_dist(np.array([[3.0]]), np.array([[1.0]]), out)\n"
              "print(out[0, 0])")

    def run():
        return float(subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True,
                                    text=True).stdout)

    assert run() == 4.0
    assert run() == 4.0  # now from the cache
    rows = tmp_path / "physfield" / "kernels" / "rows.py"
    rows.write_text(rows.read_text().replace("acc += diff * diff", "acc += 2.0 * diff * diff"))
    assert run() == 8.0


def readme_module(name):
    """The ``# name.py`` Python block of the README, as printed."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    start = text.index(f"```python\n# {name}.py\n") + len("```python\n")
    return text[start:text.index("```", start)]


@pytest.mark.slow
def test_readme_user_fields_are_certified_and_refused(tmp_path, monkeypatch):
    """The README's two user fields: `physfield check --field bridge:Bridge` holds every claim,
    `--field blurred:Blurred` fails exactly the checks the README lists."""
    monkeypatch.chdir(tmp_path)
    for name in ("bridge", "blurred"):
        (tmp_path / f"{name}.py").write_text(readme_module(name))
    runner = CliRunner()
    ok = runner.invoke(physfield_cli, ["check", "--field", "bridge:Bridge", "--param", "width=0.5"])
    assert ok.exit_code == 0, ok.output
    assert "all 16 claimed properties hold" in ok.output
    bad = runner.invoke(physfield_cli, ["check", "--field", "blurred:Blurred", "--json"])
    assert bad.exit_code == 1
    import json

    failed = {r["name"] for r in json.loads(bad.output)["checks"] if r["status"] == "fail"}
    assert failed == {"lines_arrived", "lines_leaked", "transport_pair", "gauss", "pairing"}


RAISING_FIELD = '''
import physfield as pf


class Raising(pf.GaussianPathField):
    """A user field whose profile fails."""

    def profile(self, z):
        return helper(z)


def helper(z):
    raise ZeroDivisionError("my profile divides by zero")
'''


def test_a_user_field_that_raises_names_itself_and_keeps_its_traceback(tmp_path, monkeypatch):
    """An exception in a user's own code is not bad input (exit 2) nor a failed property (exit 1):
    the first line names the user's function and file, the user's traceback follows, exit 3. Bad
    input that physfield finds in a user's class stays one line (exit 2)."""
    import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "raising.py").write_text(RAISING_FIELD)
    done = CliRunner().invoke(physfield_cli, ["check", "--field", "raising:Raising", "--n", "8", "--only", "min_ez"])
    assert done.exit_code == cli.USER_CODE_FAILED == 3, done.output
    first = done.output.splitlines()[0]
    assert first.startswith("Error: your code raised ZeroDivisionError in Raising.profile -> helper (")
    assert "raising.py:13): my profile divides by zero" in first and "Traceback" in done.output
    bad = CliRunner().invoke(physfield_cli, ["check", "--field", "raising:Raising", "--L", "-1"])
    assert "L must be" in one_line_error(bad)
