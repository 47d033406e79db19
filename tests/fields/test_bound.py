"""``field.bind(sources, sinks, plan)``: prepared once, the same bits as ``field.direction``.

A bound field is reused across point sets and dtypes (its charges are kept per compute dtype), on
both paths of the fast backend (fused pairs in low ``D``, GEMM in high ``D``) and the reference;
a named OT plan is solved once at ``bind``, not at every call.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import physfield as pf
from tests.helpers import BACKENDS


def charges(rng, N, M, D):
    return rng.normal(size=(N, D)), rng.normal(size=(M, D)) + 0.5


@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 20]), st.sampled_from(["paired", "independent", "optimal"]),
       st.sampled_from(BACKENDS), st.sampled_from(["strong", "coulomb"]))
def test_bound_direction_equals_direction(seed, D, plan, backend, kind):
    rng = np.random.default_rng(seed)
    N = M = 7
    A, B = (c.astype(np.float32) for c in charges(rng, N, M, D))  # float32 points: float32 compute
    field = pf.StrongField(4.0, 1.0, 1.0) if kind == "strong" else pf.CoulombField(4.0)
    bound = field.bind(A, B, plan=plan, backend=backend)
    for n, dtype in ((5, np.float64), (9, np.float32), (3, np.float64)):
        P = np.column_stack([rng.uniform(-0.5, 4.5, n), rng.normal(size=(n, D))])
        P32 = P.astype(dtype)
        got = bound.direction(P32, return_ess=True)
        want = field.direction(P32, A, B, plan=plan, backend=backend, return_ess=True)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert got[0].dtype == dtype
        np.testing.assert_array_equal(bound.field(P), field.field(P, A, B, plan=plan, backend=backend))


def test_named_plan_is_solved_once(monkeypatch):
    import ot

    calls = []
    emd = ot.emd
    monkeypatch.setattr(ot, "emd", lambda *a, **k: calls.append(1) or emd(*a, **k))
    rng = np.random.default_rng(0)
    A, B = charges(rng, 6, 6, 3)
    bound = pf.StrongField().bind(A, B, plan="optimal")
    for _ in range(3):
        bound.direction(np.column_stack([rng.uniform(0.1, 5.9, 4), rng.normal(size=(4, 3))]))
    assert len(calls) == 1


def test_bound_checks_its_input():
    rng = np.random.default_rng(1)
    A, B = charges(rng, 4, 4, 2)
    with pytest.raises(ValueError, match="sources.*NaN"):
        pf.StrongField().bind(np.where(A > 0, np.nan, A), B)
    bound = pf.CoulombField().bind(A, B)
    with pytest.raises(ValueError, match="D\\+1 = 3 columns"):
        bound.direction(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="exactly on a charge"):
        bound.direction(np.r_[0.0, A[1]][None, :])
