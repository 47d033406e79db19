"""The strong-interaction field of IFM: the Gaussian-path field of the sine-bridge width profile.

Quarks ``a_i`` sit on ``z = 0``, antiquarks ``b_j`` on ``z = L``; each pair is joined by a
Gaussian string (:mod:`physfield.fields.gaussian_path`) whose width follows::

    sigma(z) = sigma0 sin(k z)          0 < z < d          k = pi / (2 d)
    sigma(z) = sigma0                   d <= z <= L - d
    sigma(z) = sigma0 sin(k (L - z))    L - d < z < L

so ``s = sigma'/sigma`` is ``k cot(k z)`` near ``P``, 0 in the middle and ``-k cot(k (L - z))``
near ``Q``. The width vanishes at both plates (the strings start and end at the charges) and
``sigma'`` is continuous at ``z = d`` and ``L - d`` (``sigma''`` jumps there).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import validate
from .base import register
from .gaussian_path import GaussianPathField


def sine_bridge(z, L, sigma0, d):
    """``(sigma(z), sigma'(z))`` of the profile above for ``0 < z < L`` (NumPy ``z``, any shape)."""
    z = np.asarray(z, dtype=np.float64)
    sigma, dsigma = _sine_bridge(np.ascontiguousarray(z).reshape(-1), float(L), float(sigma0), float(d))
    return sigma.reshape(z.shape), dsigma.reshape(z.shape)


@njit(cache=True)
def _sine_bridge(z, L, sigma0, d):
    """:func:`sine_bridge` in one compiled pass (its NumPy form took a dozen array operations,
    which cost more than the pair sums of a small call)."""
    k = np.pi / (2 * d)
    sigma = np.empty_like(z)
    dsigma = np.empty_like(z)
    for i in range(z.shape[0]):
        end = min(z[i], L - z[i], d)  # depth into the nearer end region; d between them
        sign = 0.0 if end >= d else (1.0 if z[i] < L - z[i] else -1.0)  # +1 at P, -1 at Q, 0 between
        sigma[i] = sigma0 * np.sin(k * end)
        dsigma[i] = sign * (sigma0 * k) * np.cos(k * end)
    return sigma, dsigma


@register
class StrongField(GaussianPathField):
    """The IFM strong-interaction field between the plates ``z = 0`` and ``z = L``.

    Parameters
    ----------
    L : float
        Plate distance.
    sigma0 : float
        String width between the end regions.
    d : float or None
        End length, ``0 < d <= L/2``; ``None`` (the default) is ``L/2``: a pure sine bridge,
        ``sigma(z) = sigma0 sin(pi z / L)``, whose lines in ``(z/L, x)`` do not depend on ``L``.
        A small ``d`` gives long straight strings; the README ("Learning the field") records that
        the learned transport is best at ``d = L/2`` (``d = 0.5`` at ``L = 6`` was 2x worse).

    References
    ----------
    "Interaction Field Matching: Overcoming Limitations of Electrostatic Models", ICLR 2026 (IFM).
    """

    name = "strong"

    def __init__(self, L=6.0, sigma0=1.0, d=None):
        super().__init__(L)
        self.sigma0 = validate.positive("sigma0", sigma0)
        self.d = self.L / 2 if d is None else validate.positive("d", d)
        if self.d > self.L / 2 * (1 + 1e-12):
            raise ValueError(f"d must satisfy 0 < d <= L/2 = {self.L / 2}, got {self.d}")
        self.d = min(self.d, self.L / 2)

    def profile(self, z):
        return sine_bridge(z, self.L, self.sigma0, self.d)
