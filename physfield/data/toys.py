"""The built-in synthetic sources: ``gaussian[:D]`` and the 2-D toy sets of the flow-matching
literature, a few units across (each class's docstring gives its geometry, noise and mean)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..validate import positive_int
from .source import Source, register

TOY_NOISE = 0.1  # std of the isotropic Gaussian noise on moons, circles and swissroll


def _unit(t):
    """Unit vectors ``(cos t, sin t)`` as an ``(n, 2)`` array."""
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _mixture_log_density(x, means, stds, weights):
    """``log sum_k w_k N(x; m_k, diag(s_k^2))`` of the rows of ``x`` (log-sum-exp over ``k``)."""
    z = (x[:, None, :] - means[None]) / stds[None]
    log_k = np.log(weights) - 0.5 * (z ** 2).sum(axis=2) - np.log(stds).sum(axis=1) - 0.5 * x.shape[1] * np.log(2 * np.pi)
    return logsumexp(log_k, axis=1)


@register
class Gaussian(Source):
    """``gaussian[:D]``: the standard normal ``N(0, I_D)``, mean 0, covariance ``I``. No labels.

    ``D`` comes from the spec (``gaussian:3``), else from the caller's ``dim``, else 2.
    ``log p(x) = -|x|^2/2 - (D/2) log 2 pi``.
    """

    name, takes_dim = "gaussian", True

    def __init__(self, arg=None, dim=None):
        D = 2 if dim is None else dim
        if arg is not None:
            if not arg.isdecimal():
                raise ValueError(f"gaussian dimension must be a positive integer ('gaussian:3'), got {arg!r}")
            D = int(arg)
        self.dim = positive_int("gaussian dimension", D)

    def draw(self, n, rng, labels=None):
        return rng.standard_normal((n, self.dim)), None

    def log_density(self, x):
        return -0.5 * (x ** 2).sum(axis=1) - 0.5 * self.dim * np.log(2 * np.pi)


@register
class EightGaussians(Source):
    """``8gaussians``: equal-weight mixture of ``N(4 (cos k pi/4, sin k pi/4), 0.4^2 I)``,
    ``k = 0..7`` (the label).

    Mean 0; covariance ``(4^2 / 2 + 0.4^2) I = 8.16 I``.
    """

    name, dim, classes = "8gaussians", 2, 8
    CENTRES = 4.0 * _unit(np.arange(8) * (np.pi / 4))
    STD = 0.4

    def draw(self, n, rng, labels=None):
        k = rng.integers(0, 8, n) if labels is None else labels
        return self.CENTRES[k] + self.STD * rng.standard_normal((n, 2)), k

    def log_density(self, x):
        return _mixture_log_density(x, self.CENTRES, np.full((8, 2), self.STD), np.full(8, 1 / 8))


@register
class Moons(Source):
    """``moons``: scikit-learn's two moons, centred and scaled by 2, plus noise of std ``TOY_NOISE``.

    Upper moon ``2 (cos t - 1/2, sin t - 1/4)`` (label 0), lower moon ``2 (1/2 - cos t, 1/4 - sin t)``
    (label 1), ``t ~ U(0, pi)``, equal weights: the arcs have radius 2 and the mean is exactly 0.
    """

    name, dim, classes = "moons", 2, 2

    def draw(self, n, rng, labels=None):
        t = rng.uniform(0.0, np.pi, n)
        k = (rng.random(n) >= 0.5).astype(np.int64) if labels is None else labels
        side = np.where(k == 0, 1.0, -1.0)  # +1 upper moon, -1 lower moon
        arc = side[:, None] * (_unit(t) - [0.5, 0.25])
        return 2.0 * arc + TOY_NOISE * rng.standard_normal((n, 2)), k


@register
class Circles(Source):
    """``circles``: two concentric circles of radii 4 (label 0) and 2 (label 1), equal weights,
    uniform angle, noise std ``TOY_NOISE``."""

    name, dim, classes = "circles", 2, 2

    def draw(self, n, rng, labels=None):
        k = (rng.random(n) >= 0.5).astype(np.int64) if labels is None else labels
        radius = np.where(k == 0, 4.0, 2.0)
        return radius[:, None] * _unit(rng.uniform(0.0, 2 * np.pi, n)) + TOY_NOISE * rng.standard_normal((n, 2)), k


@register
class SwissRoll(Source):
    """``swissroll``: the 2-D swiss roll ``(t/3) (cos t, sin t)``, ``t ~ U(1.5 pi, 4.5 pi)``, noise
    std ``TOY_NOISE``.

    A spiral of one and a half turns whose radius ``t/3`` grows from pi/2 to 3 pi/2 (1.6 to 4.7);
    mean ``(2/3, 2/(9 pi))``. No labels.
    """

    name, dim = "swissroll", 2

    def draw(self, n, rng, labels=None):
        t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
        return (t / 3.0)[:, None] * _unit(t) + TOY_NOISE * rng.standard_normal((n, 2)), None


@register
class Checkerboard(Source):
    """``checkerboard``: uniform on the 8 squares ``[2i-4, 2i-2] x [2j-4, 2j-2]`` with ``i + j``
    even, ``i, j`` in 0..3; label ``2 i + j // 2``.

    Support in ``[-4, 4]^2``, mean 0, no noise.
    """

    name, dim, classes = "checkerboard", 2, 8

    def draw(self, n, rng, labels=None):
        if labels is None:
            i = rng.integers(0, 4, n)
            j = 2 * rng.integers(0, 2, n) + i % 2  # i + j even
        else:
            i = labels // 2
            j = 2 * (labels % 2) + i % 2
        return 2.0 * (np.stack([i, j], axis=1) + rng.random((n, 2))) - 4.0, 2 * i + j // 2


@register
class Mixture(Source):
    """``mixture``: three anisotropic Gaussians (label: the component) with weights 0.5, 0.3, 0.2,
    means and per-axis standard deviations in ``MIXTURE``: mean ``sum_k w_k m_k = (-0.5, -0.6)``."""

    name, dim, classes = "mixture", 2, 3

    def draw(self, n, rng, labels=None):
        k = rng.choice(3, size=n, p=MIXTURE["weights"]) if labels is None else labels
        return MIXTURE["means"][k] + MIXTURE["stds"][k] * rng.standard_normal((n, 2)), k

    def log_density(self, x):
        return _mixture_log_density(x, MIXTURE["means"], MIXTURE["stds"], MIXTURE["weights"])


MIXTURE = {  # weights, means, per-axis standard deviations of the three components of `mixture`
    "weights": np.array([0.5, 0.3, 0.2]),
    "means": np.array([[-2.5, -1.5], [2.5, -1.5], [0.0, 3.0]]),
    "stds": np.array([[0.8, 0.3], [0.3, 0.8], [0.5, 0.5]]),
}
