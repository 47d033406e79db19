"""The field protocol, its bound form, and the registry that names fields.

A field is a class constructed with keyword parameters (``L``, the plate distance, at least).
Every field offers the same three calls::

    bound = field.bind(sources, sinks, plan="paired", backend="auto")   # charges and plan, once
    u, log_norm = bound.direction(points)                                # unit E/|E| and log|E|
    E = bound.field(points)                                              # E itself (may underflow)

and ``field.direction(points, sources, sinks, plan, ...)`` / ``field.field(...)``, which bind and
evaluate in one go. Points are ``(n, D+1)`` arrays, column 0 = ``z``; sources ``(N, D)`` sit on
``z = 0``, sinks ``(M, D)`` on ``z = L``; ``plan`` is a name of :mod:`physfield.plans` or an
``(N, M)`` coupling.

What a field declares about itself (class attributes), which the rest of the package reads
instead of asking which field it is:

- ``lines``: ``"z"`` when its lines are followed in ``z`` (``E_z > 0`` wherever ``E`` is not 0
  between the plates, so every line runs forward from ``P`` to ``Q``: samplers step in ``z``),
  ``"arc"`` when they may turn back and are followed in arc length;
- ``vanishes_outside``: ``E = 0`` for ``z <= 0`` and ``z >= L`` (training points are then drawn
  between the plates only);
- ``claims``: the properties of :data:`CLAIMS` it promises; ``physfield check`` measures every
  property and marks the claimed ones pass or fail, the others "measured".

The registry maps names (``"strong"``, ``"coulomb"``) to classes; :func:`get` also accepts
``"module:Class"`` for a user's importable field class. :meth:`Field.params` reads a field's
parameters from its constructor's signature (each keyword parameter is stored under an attribute
of the same name), so a cache records a field as ``{"kind": spec, **params}`` and
:func:`from_params` rebuilds it.
"""

from __future__ import annotations

import inspect
import re

import numpy as np

from .. import registry, validate
from ..kernels import backend as backends
from ..kernels import engine

#: property name -> what it says; the vocabulary of ``Field.claims``
CLAIMS = {
    "endpoints": "lines from the sources end at the sinks",
    "superposition": "the field of a plan is the pi-weighted sum of its pairs' fields",
    "pairing": "for well separated charges, lines from source i end at sink j in the share pi_ij / sum_j pi_ij",
    "gauss": "the flux out of a small sphere around a charge is that charge",
    "flux": "the flux through every plane between the plates is 1",
    "forward": "E_z > 0 between the plates: no line turns back",
    "vanishes_outside": "E = 0 for z <= 0 and z >= L: no line leaks past the plates",
    "divergence_free": "div E = 0 away from the charges",
}

#: registered name -> field class
REGISTRY = {}


class Field:
    """Base class of every field; subclasses implement :meth:`bind`.

    Parameters
    ----------
    L : float
        Plate distance: sources on ``z = 0``, sinks on ``z = L``.
    """

    #: registered name (``None``: not registered; the field is then named ``module:Class``)
    name = None
    lines = "arc"
    vanishes_outside = False
    claims = ()

    def __init__(self, L=6.0):
        self.L = validate.positive("L", L)

    @classmethod
    def spec(cls):
        """How the command line names this class: its registered name, else ``module:Class``."""
        if cls.name is not None and REGISTRY.get(cls.name) is cls:
            return cls.name
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def parameter_names(cls):
        """The keyword parameters of the constructor, in order."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @classmethod
    def parameter_docs(cls):
        """``{name: description}`` of the constructor's parameters, from the numpydoc
        ``Parameters`` section of the class docstring (each entry's first sentence), so that the
        command line describes a field's options in the field's own words."""
        names, docs = cls.parameter_names(), {}
        lines = (inspect.getdoc(cls) or "").splitlines()
        for i, line in enumerate(lines):
            name = line.partition(" : ")[0]
            if " : " in line and name in names and name not in docs:
                body = []
                for more in lines[i + 1:]:
                    if not more.startswith(" "):
                        break
                    body.append(more.strip())
                text = " ".join(body).replace("``", "")
                first = re.split(r"(?<=[^.])\.(?:\s|$)", text, maxsplit=1)[0]
                docs[name] = first[:1].lower() + first[1:]
        return docs

    def params(self):
        """``{"kind": spec, **parameters}``: enough to rebuild the field with :func:`from_params`."""
        return {"kind": self.spec(), **{name: getattr(self, name) for name in self.parameter_names()}}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    def bind(self, sources, sinks, plan="paired", backend="auto", method="auto"):
        """This field for fixed charges and plan, prepared once for many ``direction`` calls.

        Parameters
        ----------
        sources, sinks : array_like, ``(N, D)`` and ``(M, D)``
            Charges on ``z = 0`` and ``z = L``.
        plan : str or array_like
            ``"paired"``, ``"independent"``, ``"optimal"``, ``"sinkhorn"`` or an ``(N, M)``
            coupling (dense or ``scipy.sparse``) summing to 1.
        backend : str or Backend
            ``"auto"``, ``"numpy"`` (the reference), ``"numba"``, ``"cupy"``.
        method : str
            ``"auto"``, ``"direct"`` or ``"gemm"`` (see :mod:`physfield.kernels.engine`).

        Returns
        -------
        Bound
        """
        raise NotImplementedError

    def direction(self, points, sources, sinks, plan="paired", backend="auto", method="auto", return_ess=False):
        """Unit field direction and ``log|E|`` at ``points`` (``(n, D+1)``, column 0 = z).

        Returns ``u`` (``(n, D+1)``, unit rows, the dtype of the inputs) and ``log_norm``
        (``(n,)`` float64); where the field is exactly 0, ``u = 0`` and ``log_norm = -inf``.
        With ``return_ess`` also the effective number of contributing pairs or charges.
        For repeated calls on the same charges use :meth:`bind` (a named OT plan is then solved
        once). Parameters as in :meth:`bind`.
        """
        return self.bind(sources, sinks, plan, backend, method).direction(points, return_ess)

    def field(self, points, sources, sinks, plan="paired", backend="auto", method="auto"):
        """The field ``E`` itself, ``(n, D+1)`` float64: ``exp(log_norm) * u``. It underflows to 0
        (or overflows) at large ``D``; use :meth:`direction` there."""
        return self.bind(sources, sinks, plan, backend, method).field(points)


class Bound:
    """A field with its charges fixed: the validated ``sources`` ``(N, D)``, ``sinks`` ``(M, D)``,
    ``dim``, the :class:`~physfield.kernels.backend.Backend` and the GEMM choice. Subclasses
    add their plan data and :meth:`direction` (and ``_prepare``, what the backend makes of the
    charges once per dtype).

    Parameters
    ----------
    field : physfield.fields.Field
        The field bound (kept as ``source_field``).
    sources, sinks : array_like, ``(N, D)`` and ``(M, D)``
        Charges on ``z = 0`` and ``z = L``: numeric, non-empty, finite 2-D arrays (NumPy or
        CuPy) with the same ``D`` (kept as ``dim``); a one-line ``ValueError`` otherwise.
    backend : str or physfield.kernels.backend.Backend
        ``"auto"`` (the default), ``"numpy"``, ``"numba"``, ``"cupy"`` or a backend object
        (:func:`physfield.kernels.get_backend`; kept as ``backend``).
    method : str
        ``"auto"`` (the default: GEMM for ``D >= GEMM_MIN_D``, 16), ``"direct"`` or ``"gemm"``
        (see :mod:`physfield.kernels.engine`; kept as the boolean ``gemm``).
    """

    def __init__(self, field, sources, sinks, backend="auto", method="auto"):
        self.source_field = field
        self.sources, self.sinks = validate.charges(sources, sinks)
        self.dim = self.sources.shape[1]
        self.backend = backends.get_backend(backend)
        self.gemm = engine.use_gemm(method, self.dim)
        self._charges = {}

    def __repr__(self):
        return (f"{self.source_field!r}.bind(N={len(self.sources)}, M={len(self.sinks)}, D={self.dim}, "
                f"backend={self.backend.name!r})")

    def _points(self, points):
        """Validated ``points``, the compute dtype, and whether they are device arrays."""
        points = validate.points(points, self.dim)
        dtype = validate.compute_dtype(points, self.sources, self.sinks)
        return points, dtype, backends.is_device_array(points)

    def _prepare(self, A, B):
        return None

    def charges(self, dtype):
        """``(A, B, prepared)``: the charges on the backend in ``dtype`` and what ``_prepare``
        makes of them, computed on the first call for each dtype."""
        key = np.dtype(dtype)
        if key not in self._charges:
            A = self.backend.asarray(self.sources, key)
            B = self.backend.asarray(self.sinks, key)
            self._charges[key] = (A, B, self._prepare(A, B))
        return self._charges[key]

    def _result(self, on_device, *arrays):
        """The outputs on the host unless the points came as device arrays."""
        return arrays if on_device else tuple(backends.to_host(a) for a in arrays)

    def direction(self, points, return_ess=False):
        raise NotImplementedError

    def field(self, points):
        """The field ``E`` itself, ``(n, D+1)`` float64: ``exp(log_norm) * u`` (underflows to 0
        or overflows at large ``D``; use :meth:`direction` there)."""
        u, log_norm = self.direction(points)
        xp = backends.array_module(u)
        with np.errstate(over="ignore", invalid="ignore"):  # 0 * inf is masked to 0
            return xp.where(u == 0, 0.0, u.astype(np.float64) * xp.exp(log_norm)[:, None])


def register(cls):
    """Class decorator: name ``cls`` by its ``name`` attribute in :data:`REGISTRY`."""
    return registry.add_class(REGISTRY, Field, cls)


def names():
    """The registered field names."""
    return sorted(REGISTRY)


def get(spec):
    """The field class named ``spec``.

    Parameters
    ----------
    spec : str or type
        A registered name (``"strong"``, ``"coulomb"``) or ``"module:Class"`` (a class of an
        importable module, the current folder included; :func:`physfield.registry.lookup`); a
        :class:`Field` subclass is returned as it is.

    Returns
    -------
    type
        The :class:`Field` subclass (not an instance).

    Raises
    ------
    ValueError
        One-line, for any other ``spec``.
    """
    if isinstance(spec, type) and issubclass(spec, Field):
        return spec
    return registry.lookup_class(spec, REGISTRY, Field, "field",
                                 "physfield field class (physfield.Field, PairField or GaussianPathField)")


def build(spec, **params):
    """An instance of the field ``spec`` (:func:`get`) with keyword ``params``.

    Parameters
    ----------
    spec : str or type
        The field: a registered name, ``"module:Class"`` or a :class:`Field` subclass (:func:`get`).
    **params
        Keyword arguments of the class's constructor (:meth:`Field.parameter_names`), e.g. ``L``.

    Returns
    -------
    physfield.fields.Field

    Raises
    ------
    ValueError
        One-line: a parameter the class does not take (the message names the ones it does).
    """
    cls = get(spec)
    known = cls.parameter_names()
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ValueError(f"field {cls.spec()} takes no parameter {unknown[0]!r} (its parameters: {', '.join(known)})")
    return cls(**params)


def from_params(params):
    """The field recorded by :meth:`Field.params`.

    Parameters
    ----------
    params : dict
        ``{"kind": spec, **parameters}``: the field's spec (:func:`get`) under ``kind`` and its
        constructor's keyword parameters; not modified.

    Returns
    -------
    physfield.fields.Field
        ``build(params["kind"], **parameters)`` (:func:`build`).
    """
    params = dict(params)
    return build(params.pop("kind"), **params)
