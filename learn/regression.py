"""What the network regresses: a regression target encodes the cache's unit field directions as
the net's output, and reads the net's output back as the slope and the direction of its lines.

Each target is one :class:`Target` subclass registered by name (:data:`REGISTRY`); ``learn train
--target NAME`` or ``--target module:Class`` (a user's own, as ``--field module:Class``) chooses
one, and the run records its name, so sampling, checking and likelihoods read it back.

- ``direction`` regresses the cached unit direction ``u = E/|E|`` (``D + 1`` numbers); its lines
  are ``dx/dz = f_x / f_z`` where ``f_z > 0``.
- ``velocity`` regresses the slope ``dx/dz = u_x / u_z`` in units of the normalised time
  ``t = z / L``, i.e. ``dx/dt = L u_x / u_z`` (``D`` numbers): a line from ``a`` to ``b`` has
  ``dx/dt ~ b - a`` at every ``L``, so the regression has the same scale whatever the plate
  distance (with ``dx/dz`` itself an error ``e`` of the network moves a sample by ``~ L e``).
  ``u_z`` is floored at :data:`VELOCITY_UZ_MIN` so float32 rounding of an almost horizontal ``u``
  never divides by zero. It needs a field with ``u_z > 0``, one whose lines are followed in ``z``
  (``field.lines == "z"``: the strong field).

``auto`` (:func:`resolve`) is ``velocity`` for a field whose lines are followed in ``z``, else
``direction``: the velocity target measured best (the README, "Learning the field").
"""

from __future__ import annotations

import numpy as np
import torch

from physfield import fields, registry

VELOCITY_UZ_MIN = 1e-4

#: the registered regression targets by name
REGISTRY = {}


class Target:
    """A regression target: the hooks a new one overrides.

    ``name`` is its registered name; ``needs_z_lines`` says it is defined only for a field whose
    lines are followed in ``z`` (``u_z > 0`` between the plates); ``always_forward`` that the
    field it gives has ``f_z > 0`` by construction (its lines cannot turn back). A target is made
    without arguments (:func:`get`).
    """

    name = None
    needs_z_lines = False
    always_forward = False

    def output_dim(self, D):
        """The network's output size for data of dimension ``D``.

        Parameters
        ----------
        D : int
            The data dimension.

        Returns
        -------
        int
        """
        raise NotImplementedError

    def encode(self, U, L):
        """The regression targets ``(B, output_dim)`` float32 of the cached unit directions.

        Parameters
        ----------
        U : ndarray, shape (B, D+1), float32
            The cached unit directions ``u = (u_z, u_x)`` (NumPy).
        L : float
            The plate distance.

        Returns
        -------
        ndarray, shape (B, output_dim), float32
        """
        raise NotImplementedError

    def slope(self, f, L):
        """``(s, bad)`` of the net's output: the slope ``dx/dz`` and the rows where it is undefined.

        Parameters
        ----------
        f : torch.Tensor, shape (n, output_dim)
            The net's output.
        L : float
            The plate distance.

        Returns
        -------
        s : torch.Tensor, shape (n, D)
            The slope ``dx/dz`` (0 on the ``bad`` rows).
        bad : torch.Tensor of bool, shape (n,)
            The rows where the slope is undefined.
        """
        raise NotImplementedError

    def field(self, f, L):
        """The learned field's direction, not normalised, of the net's output.

        Parameters
        ----------
        f : torch.Tensor, shape (n, output_dim)
            The net's output.
        L : float
            The plate distance.

        Returns
        -------
        torch.Tensor, shape (n, D+1)
        """
        raise NotImplementedError


def register(cls):
    """Class decorator: name the :class:`Target` subclass ``cls`` by its ``name`` in :data:`REGISTRY`.

    Parameters
    ----------
    cls : type
        A :class:`Target` subclass with a ``name``.

    Returns
    -------
    type
        ``cls`` itself.
    """
    return registry.add_class(REGISTRY, Target, cls)


def names():
    """The registered regression target names.

    Returns
    -------
    list of str
        Sorted.
    """
    return sorted(REGISTRY)


def get(spec):
    """The :class:`Target` ``spec`` (an instance). One-line ``ValueError`` otherwise.

    Parameters
    ----------
    spec : str or learn.regression.Target
        A :class:`Target` (returned as it is), a registered name or ``"module:Class"`` (a user's
        :class:`Target` subclass; its instance is named by the spec, which the run records).

    Returns
    -------
    learn.regression.Target
    """
    if isinstance(spec, Target):
        return spec
    target = registry.lookup_class(spec, REGISTRY, Target, "regression target")()
    if spec.strip() not in REGISTRY:  # a user's class: the run records the spec that finds it again
        target.name = spec.strip()
    return target


def resolve(spec, cache):
    """The :class:`Target` of ``spec`` for the targets ``cache``: ``"auto"`` is ``velocity`` for a
    field whose lines are followed in ``z``, else ``direction``; a target that needs such a field
    is refused for another (one-line ``ValueError``).

    Parameters
    ----------
    spec : str or learn.regression.Target
        ``"auto"`` or anything :func:`get` takes.
    cache : physfield.targets.Cache
        The targets cache (its field's parameters decide).

    Returns
    -------
    learn.regression.Target
    """
    z_lines = fields.from_params(cache.field_params).lines == "z"
    if spec == "auto":
        spec = "velocity" if z_lines else "direction"
    target = get(spec)
    if target.needs_z_lines and not z_lines:
        raise ValueError(f"--target {target.name} needs a field with u_z > 0 (lines followed in z), not "
                         f"{cache.field_params['kind']}; use direction")
    return target


@register
class Direction(Target):
    """The unit direction ``u = E/|E|`` itself (``D + 1`` numbers); lines ``dx/dz = f_x / f_z``."""

    name = "direction"

    def output_dim(self, D):
        return D + 1

    def encode(self, U, L):
        return U

    def slope(self, f, L):
        ok = (f[:, 0] > 0) & torch.isfinite(f).all(dim=1)
        return torch.where(ok[:, None], f[:, 1:] / torch.where(ok, f[:, 0], 1.0)[:, None], 0.0), ~ok

    def field(self, f, L):
        return f


@register
class Velocity(Target):
    """The slope in ``t = z / L``: ``dx/dt = L u_x / u_z`` (``D`` numbers); lines ``dx/dz = f / L``."""

    name = "velocity"
    needs_z_lines = True
    always_forward = True

    def output_dim(self, D):
        return D

    def encode(self, U, L):
        return np.float32(L) * U[:, 1:] / np.maximum(U[:, :1], VELOCITY_UZ_MIN)

    def slope(self, f, L):
        return f / L, torch.zeros(len(f), dtype=torch.bool, device=f.device)

    def field(self, f, L):
        return torch.cat([torch.ones_like(f[:, :1]), f / L], dim=1)
