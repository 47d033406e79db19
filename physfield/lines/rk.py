"""The Runge-Kutta steps both line followers take (:mod:`physfield.lines`).

One step of ``dy/dt = rate(dt, y)`` of length ``h`` (``dt`` the stage's offset in ``t``)::

    euler:  y += h k1
    heun:   y += h (k1 + k2) / 2,                k2 = rate(h, y + h k1)
    rk4:    y += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical: k2 = rate(h/2, y + h/2 k1),
                                                  k3 = rate(h/2, y + h/2 k2), k4 = rate(h, y + h k3))
"""

from __future__ import annotations

METHODS = ("euler", "heun", "rk4")


def check_method(method):
    """``method`` if it is one of :data:`METHODS`; else a one-line ``ValueError``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def advance(rate, y, h, method):
    """One step ``y -> y + h ...`` of ``dy/dt = rate(dt, y)``, ``dt`` the stage's offset in ``t``."""
    k1 = rate(0.0, y)
    if method == "euler":
        return y + h * k1
    if method == "heun":
        return y + h / 2 * (k1 + rate(h, y + h * k1))
    k2 = rate(h / 2, y + h / 2 * k1)
    k3 = rate(h / 2, y + h / 2 * k2)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + rate(h, y + h * k3))
