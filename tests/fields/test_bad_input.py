"""Bad input ends in one ``ValueError`` whose one-line message names the problem.

Every case is run against both fields and both public calls (``direction`` and ``field``);
``match`` is a word of the message that says what is wrong.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import physfield as pf

FIELDS = {"strong": lambda: pf.StrongField(L=2.0, sigma0=1.0, d=0.5), "coulomb": lambda: pf.CoulombField(L=2.0)}

rng = np.random.default_rng(0)
P = np.column_stack([rng.uniform(0.2, 1.8, 4), rng.normal(size=(4, 2))])
A, B = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
NAN, INF = np.nan, np.inf


def with_value(array, value, index=(0, 0)):
    out = np.array(array, dtype=np.float64)
    out[index] = value
    return out


PAIRED = np.eye(3) / 3

BAD_CALLS = {
    # shapes
    "1-D points": (dict(points=P[0]), "2-D"),
    "3-D points": (dict(points=P[:, :, None]), "2-D"),
    "points with D columns": (dict(points=P[:, 1:]), "columns"),
    "points with D+2 columns": (dict(points=np.column_stack([P, P[:, :1]])), "columns"),
    "1-D sources": (dict(sources=A[:, 0]), "sources"),
    "sources and sinks of different D": (dict(sinks=np.column_stack([B, B[:, :1]])), "D ="),
    "no points": (dict(points=np.empty((0, 3))), "empty"),
    "no sources": (dict(sources=np.empty((0, 2)), plan="independent"), "empty"),
    "no sinks": (dict(sinks=np.empty((0, 2)), plan="independent"), "empty"),
    "ragged points": (dict(points=[[1.0, 0.0, 0.0], [1.0, 0.0]]), "array"),
    # values
    "NaN in points": (dict(points=with_value(P, NAN, (1, 2))), "NaN"),
    "Inf in points": (dict(points=with_value(P, INF)), "Inf"),
    "-Inf in points": (dict(points=with_value(P, -INF, (3, 0))), "Inf"),
    "NaN in sources": (dict(sources=with_value(A, NAN)), "sources.*NaN"),
    "Inf in sinks": (dict(sinks=with_value(B, INF, (2, 1))), "sinks.*Inf"),
    "NaN in plan": (dict(plan=with_value(PAIRED, NAN)), "plan.*NaN"),
    "Inf in plan": (dict(plan=with_value(PAIRED, INF, (1, 2))), "plan.*Inf"),
    # dtypes
    "string points": (dict(points=P.astype(str)), "numeric"),
    "object points": (dict(points=np.array([[1.0, None, 0.0]], dtype=object)), "numeric"),
    "complex sources": (dict(sources=A.astype(complex)), "numeric"),
    "boolean sinks": (dict(sinks=B > 0), "numeric"),
    # plans
    "plan of the wrong shape": (dict(plan=np.full((3, 2), 1 / 6)), "shape"),
    "plan with a negative entry": (dict(plan=PAIRED + np.diag([0.3, 0.3, -0.6])), "negative"),
    "plan not summing to 1": (dict(plan=2 * PAIRED), "sum"),
    "sparse plan of the wrong shape": (dict(plan=sp.csr_array(np.full((2, 3), 1 / 6))), "shape"),
    "sparse plan with a negative entry": (dict(plan=sp.csr_array(PAIRED + np.diag([0.3, 0.3, -0.6]))), "negative"),
    "scalar plan": (dict(plan=1.0), "shape"),
    "unknown plan name": (dict(plan="greedy"), "unknown plan"),
    "paired plan with N != M": (dict(sinks=B[:2]), "paired"),
    # options
    "unknown backend": (dict(backend="tpu"), "unknown backend"),
    "unknown method": (dict(method="fft"), "unknown method"),
}


@pytest.mark.parametrize("call", ["direction", "field"])
@pytest.mark.parametrize("kind", FIELDS)
@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_call(case, kind, call):
    change, word = BAD_CALLS[case]
    args = dict(points=P, sources=A, sinks=B, plan="paired") | change
    with pytest.raises(ValueError, match=word) as err:
        getattr(FIELDS[kind](), call)(**args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call", ["direction", "field"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("plate", ["source", "sink"])
def test_point_on_a_coulomb_charge(plate, dtype, backend, call):
    charge = np.concatenate([[0.0], A[2]]) if plate == "source" else np.concatenate([[2.0], B[0]])
    points = np.vstack([P, charge]).astype(dtype)
    with pytest.raises(ValueError, match="charge") as err:
        getattr(FIELDS["coulomb"](), call)(points, A.astype(dtype), B.astype(dtype), backend=backend)
    assert "\n" not in str(err.value)


BAD_PARAMS = [
    ("strong", dict(L=0.0), "L must"),
    ("strong", dict(L=-2.0), "L must"),
    ("strong", dict(L=NAN), "L must"),
    ("strong", dict(L=INF), "L must"),
    ("strong", dict(L="six"), "L must"),
    ("strong", dict(sigma0=0.0), "sigma0"),
    ("strong", dict(sigma0=-1.0), "sigma0"),
    ("strong", dict(sigma0=NAN), "sigma0"),
    ("strong", dict(d=0.0), "d must"),
    ("strong", dict(d=-0.1), "d must"),
    ("strong", dict(d=NAN), "d must"),
    ("strong", dict(d=1.5), "L/2"),
    ("coulomb", dict(L=0.0), "L must"),
    ("coulomb", dict(L=-1.0), "L must"),
    ("coulomb", dict(L=NAN), "L must"),
    ("coulomb", dict(L=None), "L must"),
]


@pytest.mark.parametrize("kind, params, word", BAD_PARAMS)
def test_bad_field_parameters(kind, params, word):
    make = {"strong": pf.StrongField, "coulomb": pf.CoulombField}[kind]
    defaults = {"strong": dict(L=2.0, sigma0=1.0, d=0.5), "coulomb": dict(L=2.0)}[kind]
    with pytest.raises(ValueError, match=word) as err:
        make(**(defaults | params))
    assert "\n" not in str(err.value)


def test_d_equal_to_half_L_is_allowed():
    assert pf.StrongField(L=2.0, sigma0=1.0, d=1.0).d == 1.0


@pytest.mark.parametrize("make, args, word", [
    (pf.plans.sinkhorn, dict(reg=0.0), "reg"),
    (pf.plans.sinkhorn, dict(reg=-1.0), "reg"),
    (pf.plans.paired, {}, "paired"),
])
def test_bad_plan_construction(make, args, word):
    with pytest.raises(ValueError, match=word) as err:
        make(A, B[:2], **args)
    assert "\n" not in str(err.value)


def test_all_finite_survives_an_overflowing_sum():
    from physfield.validate import all_finite

    big = np.full((3, 2), 1e308)
    assert all_finite(np, big)  # the sum overflows; every entry is finite
    assert all_finite(np, np.full((2, 2), 3e38, np.float32))
    for bad in (np.inf, -np.inf, np.nan):
        assert not all_finite(np, with_value(big, bad))
    assert all_finite(np, np.arange(6).reshape(2, 3))
