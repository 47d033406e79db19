"""The Runge-Kutta steps both line followers take (:mod:`physfield.lines`).

Fixed steps. One step of ``dy/dt = rate(dt, y)`` of length ``h`` (``dt`` the stage's offset in ``t``)::

    euler:  y += h k1
    heun:   y += h (k1 + k2) / 2,                k2 = rate(h, y + h k1)
    rk4:    y += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical: k2 = rate(h/2, y + h/2 k1),
                                                  k3 = rate(h/2, y + h/2 k2), k4 = rate(h, y + h k3))

Adaptive steps. An embedded pair (:class:`Pair`) takes the stages ``k_i = rate(c_i h, y + h
sum_j a_ij k_j)`` and from them two solutions, ``y + h sum_i b_i k_i`` of order ``p`` (kept) and
one of order ``p - 1`` whose difference ``h sum_i e_i k_i`` estimates the step's error::

    bs32:    Bogacki and Shampine's 3(2) pair, 4 stages, 3 evaluations per step (the last stage
             is the next step's first);
    dopri5:  Dormand and Prince's 5(4) pair, 7 stages, 6 evaluations per step (likewise).

A step is accepted when its scaled error ``err = max over rows of the root mean square over
columns of e / (atol + rtol max(|y|, |y_new|))`` is at most 1, so every row (every line) meets
the tolerance; the next step is ``h min(5, max(0.2, 0.9 err^(-1 / p)))`` (Hairer, Norsett and
Wanner, *Solving Ordinary Differential Equations I*, 2nd ed., Springer 1993, section II.4).

References
----------
P. Bogacki and L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas", Appl. Math. Lett. 2 (1989).
J. R. Dormand and P. J. Prince, "A family of embedded Runge-Kutta formulae", J. Comput. Appl.
Math. 6 (1980).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    """An embedded explicit Runge-Kutta pair whose last stage is evaluated at the new point
    ("first same as last": it is the next step's first stage).

    Parameters
    ----------
    name : str
        The method's name.
    c : tuple of float
        The stages' offsets in ``t``, in units of ``h``.
    a : tuple of tuple of float
        Row ``i`` holds the weights ``a_ij`` of stages ``j < i`` in stage ``i``'s point; the last
        row holds the weights ``b_i`` of the solution kept (order ``order``).
    e : tuple of float
        The weights of the error estimate: ``b`` minus the weights of the embedded solution.
    order : int
        The order ``p`` of the solution kept.
    """

    name: str
    c: tuple
    a: tuple
    e: tuple
    order: int

    @property
    def evaluations(self):
        """Evaluations of ``rate`` per step (the stages less the shared first one)."""
        return len(self.c) - 1


def _pair(name, c, a, b_low, order):
    """The pair whose kept weights are the last row of ``a`` and embedded weights ``b_low``."""
    b = (*a[-1], 0)
    return Pair(name, c, a, tuple(hi - lo for hi, lo in zip(b, b_low)), order)


BS32 = _pair("bs32", (0, 1 / 2, 3 / 4, 1),
             ((), (1 / 2,), (0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
             (7 / 24, 1 / 4, 1 / 3, 1 / 8), 3)
DOPRI5 = _pair("dopri5", (0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1),
               ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
                (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
                (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
                (35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)),
               (5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40), 5)

#: the adaptive methods, by name
PAIRS = {pair.name: pair for pair in (BS32, DOPRI5)}
#: the fixed-step methods and their evaluations of ``rate`` per step
FIXED = {"euler": 1, "heun": 2, "rk4": 4}
#: every method's name
METHODS = (*FIXED, *PAIRS)
#: the step factor's bounds and safety factor of the step-size control
GROW, SHRINK, SAFETY = 5.0, 0.2, 0.9


def check_method(method, allowed=METHODS):
    """``method`` if it is one of ``allowed`` (default :data:`METHODS`); else a one-line ``ValueError``.

    Parameters
    ----------
    method : str
        The method's name.
    allowed : sequence of str
        The names accepted.

    Returns
    -------
    str
        ``method``.
    """
    if method not in allowed:
        raise ValueError(f"method must be one of {', '.join(allowed)}, got {method!r}")
    return method


def advance(rate, y, h, method):
    """One fixed step ``y -> y + h ...`` of ``dy/dt = rate(dt, y)``, ``dt`` the stage's offset in ``t``.

    Parameters
    ----------
    rate : callable
        ``rate(dt, y) -> dy/dt``.
    y : array
        The state.
    h : float or array
        The step (an array broadcasts against ``y``: one step per row).
    method : {"euler", "heun", "rk4"}

    Returns
    -------
    array
        The state after the step.
    """
    k1 = rate(0.0, y)
    if method == "euler":
        return y + h * k1
    if method == "heun":
        return y + h / 2 * (k1 + rate(h, y + h * k1))
    k2 = rate(h / 2, y + h / 2 * k1)
    k3 = rate(h / 2, y + h / 2 * k2)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + rate(h, y + h * k3))


def embedded_step(rate, y, h, pair, k1):
    """One trial step of an embedded pair from ``y``, whose first stage ``k1 = rate(0, y)`` is known.

    Parameters
    ----------
    rate : callable
        ``rate(dt, y) -> dy/dt``.
    y : array
        The state.
    h : float
        The step.
    pair : Pair
        The method.
    k1 : array
        ``rate(0, y)``.

    Returns
    -------
    tuple
        ``(y_new, error, k_last)``: the new state (order ``pair.order``), the error estimate
        ``h sum_i e_i k_i`` (same shape) and ``rate(h, y_new)``, the next step's first stage.
    """
    k = [k1]
    for c, a in zip(pair.c[1:], pair.a[1:]):
        k.append(rate(c * h, y + h * _combine(a, k)))
    y_new = y + h * _combine(pair.a[-1], k)
    return y_new, h * _combine(pair.e, k), k[-1]


def _combine(weights, k):
    """``sum_i weights_i k_i`` over the nonzero weights."""
    terms = [w * ki for w, ki in zip(weights, k) if w != 0]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def row_errors(xp, error, y, y_new, rtol, atol):
    """Each row's scaled error: the root mean square over columns of ``error / (atol + rtol
    max(|y|, |y_new|))``, ``inf`` where it is not finite.

    Parameters
    ----------
    xp : module
        The array namespace of the arrays.
    error, y, y_new : array (n, m)
        The error estimate and the states before and after the step.
    rtol, atol : float
        The relative and absolute tolerances.

    Returns
    -------
    array (n,)
        The scaled error of each row (a row's step is accepted when it is ``<= 1``).
    """
    scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
    rms = xp.sqrt(xp.mean((error / scale) ** 2, axis=1))
    return xp.where(xp.isfinite(rms), rms, float("inf"))


def error_norm(xp, error, y, y_new, rtol, atol):
    """The scaled error of a step taken by all rows together: the largest of :func:`row_errors`
    (the same parameters).

    Returns
    -------
    float
        The scaled error (accepted when ``<= 1``); ``inf`` when it is not finite.
    """
    rms = row_errors(xp, error, y, y_new, rtol, atol)
    return float(xp.max(rms)) if rms.shape[0] else 0.0


def next_step(h, err, order):
    """The step after one of length ``h`` with scaled error ``err`` (:func:`error_norm`).

    Parameters
    ----------
    h : float
        The step just tried.
    err : float
        Its scaled error.
    order : int
        The order ``p`` of the pair's kept solution.

    Returns
    -------
    float
        ``h min(GROW, max(SHRINK, SAFETY err^(-1/p)))`` (``h GROW`` at zero error).
    """
    if err == 0:
        return h * GROW
    return h * min(GROW, max(SHRINK, SAFETY * err ** (-1.0 / order)))
