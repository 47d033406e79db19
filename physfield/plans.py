"""Transport plans (couplings) between sources ``a_i`` (N x D) and sinks ``b_j`` (M x D).

A plan ``pi`` is an ``(N, M)`` non-negative matrix summing to 1. The strong
field is the superposition ``E_pi = sum_ij pi_ij E_{a_i b_j}``; the Coulomb field depends only on
the marginals ``pi 1`` (source charges) and ``pi^T 1`` (sink charges).

Named plans:

- ``paired``      ``pi = I / N``: pair ``i`` with ``i`` (needs ``N == M``); returned sparse.
- ``independent`` ``pi_ij = 1 / (N M)``: every source with every sink.
- ``optimal``     exact OT plan for the squared Euclidean cost (POT ``ot.emd``).
- ``sinkhorn``    entropic OT plan ``argmin <pi, C> - reg H(pi)`` (POT, log-domain).

:func:`within_class` builds any of them class by class (labelled data): a block-diagonal plan
that couples only samples of the same class.

Any explicit dense or ``scipy.sparse`` ``(N, M)`` array is accepted and validated by
:func:`validate`. The field kernels never see the matrix: :func:`support` turns a plan into the
list of its ``K`` non-zero entries ``(i_k, j_k, log pi_k)``.

A named plan is a :class:`Plan`: a function ``make(sources, sinks, **params)`` returning the
coupling, the keyword parameters it takes (``sinkhorn``: ``reg``) and whether it is the diagonal
``I / N``. :func:`register` names one in :data:`REGISTRY`; :func:`get` also reaches a user's
function as ``"module:function"`` (``physfield targets --plan mymodule:my_plan``), so a new plan
is one function.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from . import registry

SUM_TOL = 1e-6


@dataclass(frozen=True)
class Plan:
    """A named plan.

    Parameters
    ----------
    name : str
        Its registered name or ``"module:function"``.
    make : callable
        ``make(sources, sinks, **params) -> pi``: an ``(N, M)`` coupling, dense or
        ``scipy.sparse``, summing to 1 (checked by :func:`validate`).
    params : tuple of str
        The keyword parameters ``make`` takes (``("reg",)`` for ``sinkhorn``).
    diagonal : bool
        ``pi = I / N``: :func:`support` lists the diagonal without building the matrix, and a
        minibatch sampler pairs sink ``i`` with source ``i``.
    """

    name: str
    make: Callable
    params: tuple = ()
    diagonal: bool = False

    def __call__(self, sources, sinks, **params):
        """The validated plan between ``sources`` and ``sinks``; of ``params`` only those it takes."""
        pi = self.make(sources, sinks, **{k: v for k, v in params.items() if k in self.params})
        return validate(pi, len(sources), len(sinks))


#: the registered plans by name
REGISTRY = {}


def register(name, params=(), diagonal=False):
    """Decorator: register the function ``make(sources, sinks, **params)`` as the plan ``name``
    (:class:`Plan`); returns the function unchanged."""
    def add(make):
        REGISTRY[name] = Plan(name, make, tuple(params), diagonal)
        return make

    return add


def get(spec):
    """The :class:`Plan` ``spec``: a :class:`Plan`, a registered name or ``"module:function"`` (a
    function ``f(sources, sinks, **params)``; its keyword parameters are those after the first
    two). One-line ``ValueError`` otherwise."""
    if isinstance(spec, Plan):
        return spec
    obj = registry.lookup(spec, REGISTRY, "plan", "module:function")
    if isinstance(obj, Plan):
        return obj
    if not callable(obj):
        raise ValueError(f"plan {spec.strip()!r} is not a function f(sources, sinks)")
    try:
        params = tuple(inspect.signature(obj).parameters)[2:]
    except (TypeError, ValueError):
        params = ()
    return Plan(spec.strip(), obj, params)


def names():
    """The registered plan names."""
    return sorted(REGISTRY)


def _pair_count(sources, sinks):
    n, m = len(sources), len(sinks)
    if n != m:
        raise ValueError(f"plan 'paired' needs as many sources as sinks, got {n} and {m}")
    return n


@register("paired", diagonal=True)
def paired(sources, sinks):
    """``pi = I / N``, as a ``scipy.sparse.csr_array`` (pair ``i`` with ``i``)."""
    n = _pair_count(sources, sinks)
    return sp.csr_array(sp.eye_array(n, format="csr") / n)


@register("independent")
def independent(sources, sinks):
    """``pi_ij = 1 / (N M)``: the product of the two empirical measures (N*M pairs)."""
    n, m = len(sources), len(sinks)
    return np.full((n, m), 1.0 / (n * m))


def _cost(sources, sinks):
    """Squared Euclidean cost ``C_ij = |a_i - b_j|^2`` in float64."""
    return cdist(np.asarray(sources, np.float64), np.asarray(sinks, np.float64), metric="sqeuclidean")


@register("optimal")
def optimal(sources, sinks):
    """Exact OT plan ``argmin_pi <pi, C>`` with uniform marginals, ``C_ij = |a_i - b_j|^2``.

    POT's network simplex (``ot.emd``); at most ``N + M - 1`` non-zero entries.
    """
    import ot  # POT imports torch when it is installed: only when an OT plan is asked for

    n, m = len(sources), len(sinks)
    pi = ot.emd(np.full(n, 1.0 / n), np.full(m, 1.0 / m), _cost(sources, sinks), numItermax=10**7)
    return pi / pi.sum()


@register("sinkhorn", params=("reg",))
def sinkhorn(sources, sinks, reg=0.05):
    """Entropic OT plan ``argmin_pi <pi, C> - reg * H(pi)``, uniform marginals (log-domain).

    ``reg`` is relative to the mean cost: POT is called with ``reg * mean(C)``, so the same
    value means the same amount of blur at any scale or dimension. Sinkhorn's iterations meet
    the marginals only approximately (slowly when ``reg`` is small), so the result is rounded
    onto the exact marginals (:func:`round_to_marginals`).
    """
    if not reg > 0:
        raise ValueError(f"sinkhorn needs reg > 0, got {reg}")
    import ot  # see optimal()

    n, m = len(sources), len(sinks)
    r, c = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    cost = _cost(sources, sinks)
    pi = ot.sinkhorn(r, c, cost, reg * max(cost.mean(), np.finfo(float).tiny), method="sinkhorn_log",
                     numItermax=2000, stopThr=1e-10, warn=False)
    return round_to_marginals(pi, r, c)


def round_to_marginals(pi, r, c):
    """The coupling of ``r`` and ``c`` nearest ``pi`` by Altschuler, Weed and Rigollet's rounding
    (NeurIPS 2017, Alg. 2): scale rows down to ``<= r``, columns down to ``<= c``, then add the
    rank-one ``e_r e_c^T / |e_r|_1`` of the missing mass. Moves ``pi`` by at most twice its
    marginal error in L1; the result has marginals ``r`` and ``c`` to round-off."""
    pi = pi * np.minimum(r / np.maximum(pi.sum(axis=1), np.finfo(float).tiny), 1.0)[:, None]
    pi = pi * np.minimum(c / np.maximum(pi.sum(axis=0), np.finfo(float).tiny), 1.0)[None, :]
    er, ec = np.maximum(r - pi.sum(axis=1), 0.0), np.maximum(c - pi.sum(axis=0), 0.0)
    if er.sum() > 0:
        pi = pi + np.outer(er, ec) / er.sum()
    return pi


def validate(pi, n, m):
    """Check an explicit plan: shape ``(n, m)``, finite, non-negative, sum 1 (within 1e-6).

    Returns it as float64 (dense ``ndarray`` or ``scipy.sparse`` COO array).
    """
    if sp.issparse(pi):
        pi = sp.coo_array(pi, dtype=np.float64)
        values = pi.data
    else:
        pi = np.asarray(pi, dtype=np.float64)
        values = pi
    if pi.ndim != 2 or pi.shape != (n, m):
        raise ValueError(f"plan has shape {tuple(pi.shape)}, expected ({n}, {m}) = (sources, sinks)")
    if not np.all(np.isfinite(values)):
        raise ValueError("plan contains NaN or Inf")
    if np.any(values < 0):
        raise ValueError("plan has negative entries")
    total = float(values.sum())
    if abs(total - 1.0) > SUM_TOL:
        raise ValueError(f"plan must sum to 1, sums to {total:.9g}")
    return pi


def resolve(plan, sources, sinks, reg=0.05):
    """A plan (:func:`get`: a name, ``"module:function"``, a :class:`Plan`) or an array ->
    validated ``(N, M)`` plan (dense or sparse); ``reg`` goes to the plans that take it."""
    if isinstance(plan, (str, Plan)):
        return get(plan)(sources, sinks, reg=reg)
    return validate(plan, len(sources), len(sinks))


def within_class(plan, sources, sinks, source_labels, sink_labels, reg=0.05):
    """The plan ``plan`` (a name) restricted to pairs of one class: block-diagonal, dense ``(N, M)``.

    For each class ``c`` of the sources, with ``I_c`` its ``n_c`` sources and ``J_c`` the ``m_c``
    sinks of class ``c``, the block ``pi[I_c, J_c]`` is ``(n_c / N)`` times the named plan between
    them; every other entry is 0. The rows keep the uniform marginal ``1/N``; the columns keep
    ``1/M`` when every class has as many sinks as sources (``n_c / N = m_c / M``: the targets'
    sampler draws the sinks class by class to match the sources). A source class without sinks
    is a ``ValueError`` (no pair can take its mass).
    """
    source_labels, sink_labels = np.asarray(source_labels), np.asarray(sink_labels)
    n, m = len(sources), len(sinks)
    if source_labels.shape != (n,) or sink_labels.shape != (m,):
        raise ValueError(f"need one label per source and per sink, got {source_labels.shape} for {n} sources "
                         f"and {sink_labels.shape} for {m} sinks")
    pi = np.zeros((n, m))
    for c in np.unique(source_labels):
        rows, cols = np.flatnonzero(source_labels == c), np.flatnonzero(sink_labels == c)
        if not len(cols):
            raise ValueError(f"class {c} has {len(rows)} sources but no sink to pair them with")
        block = resolve(plan, sources[rows], sinks[cols], reg=reg)
        block = block.toarray() if sp.issparse(block) else block
        pi[np.ix_(rows, cols)] = block * (len(rows) / n)
    return pi


def support(plan, sources, sinks, reg=0.05):
    """The non-zero entries of a plan: ``(i, j, log_pi)``, each of length ``K``.

    ``K = N`` for ``paired``, ``N * M`` for ``independent``, ``<= N + M - 1`` for ``optimal``.
    """
    if isinstance(plan, (str, Plan)) and get(plan).diagonal:  # I / N, without building it
        n = _pair_count(sources, sinks)
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), np.full(n, np.log(1.0 / n))
    pi = resolve(plan, sources, sinks, reg=reg)
    if sp.issparse(pi):
        coo = sp.coo_array(pi)
        i, j, w = coo.row, coo.col, coo.data
    else:
        i, j = np.nonzero(pi)
        w = pi[i, j]
    keep = w > 0
    return i[keep].astype(np.int64), j[keep].astype(np.int64), np.log(w[keep])


def marginals(plan, sources, sinks, reg=0.05):
    """Row and column sums ``(pi 1, pi^T 1)`` of a plan (the Coulomb charges)."""
    pi = resolve(plan, sources, sinks, reg=reg)
    return np.asarray(pi.sum(axis=1)).ravel(), np.asarray(pi.sum(axis=0)).ravel()
