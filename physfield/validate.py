"""Input checks shared by every public call: one ``ValueError`` naming the problem."""

from __future__ import annotations

import numpy as np

from .kernels.backend import is_device_array


def array(name, x, ndim):
    xp = np
    if is_device_array(x):
        import cupy as xp
    try:
        x = xp.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} is not an array: {exc}") from None
    if x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not all_finite(xp, x):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def all_finite(xp, x):
    """Whether every entry of ``x`` is finite (``isfinite`` and ``all``: measured faster than a
    finite-sum test under ``errstate``, 1.6 vs 3.0 us at 256 x 3 and 122 vs 132 us at 256 x 3073)."""
    return x.dtype.kind in "iu" or bool(xp.isfinite(x).all())


def compute_dtype(*arrays):
    """float32 when every input is float32 (or smaller), float64 otherwise."""
    return np.result_type(np.float32, *[a.dtype for a in arrays])


def charges(sources, sinks):
    """Validate sources ``(N, D)`` and sinks ``(M, D)``; returns them with ``D``."""
    sources = array("sources", sources, 2)
    sinks = array("sinks", sinks, 2)
    if sources.shape[1] != sinks.shape[1]:
        raise ValueError(f"sources have D = {sources.shape[1]} but sinks have D = {sinks.shape[1]}")
    return sources, sinks


def points(points, dim):
    """Validate points ``(n, D+1)`` (column 0 = z) against the charges' ``D``."""
    points = array("points", points, 2)
    if points.shape[1] != dim + 1:
        raise ValueError(f"points must have D+1 = {dim + 1} columns (z, x), got {points.shape[1]}")
    return points


def positive(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def positive_int(name, value):
    """``value`` as a positive ``int`` (a Python or NumPy integer, not a bool); else a one-line
    ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def finite_number(name, value, low=-np.inf, strict=False):
    """``value`` as a finite ``float``, ``> low`` (``strict``) or ``>= low``; else a one-line
    ``ValueError`` naming ``name`` (a bool or a string is not a number)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not np.isfinite(value) or value < low or (strict and value == low):
        bound = f" {'>' if strict else '>='} {low:g}" if low > -np.inf else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def one_line(exc):
    """The message of ``exc`` on one line (its whitespace runs, newlines included, as one space)."""
    return " ".join(str(exc).split())
