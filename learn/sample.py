"""Sample by following the learned field lines from ``P`` (``z = eps``) to ``Q`` (``z = L``).

The line through ``(z, x)`` solves ``dx/dz = s(z, x)`` with the slope

    direction network:  s = f_x / f_z      (f = f(z, x) in R^{D+1})
    velocity network:   s = f              (f in R^D, the slope itself)

integrated on the uniform grid ``z_i = eps + i h``, ``h = (L - eps) / steps`` by

    euler:  x += h k1
    heun:   x += h (k1 + k2) / 2,                k2 = s(z + h, x + h k1)
    rk4:    x += h (k1 + 2 k2 + 2 k3 + k4) / 6   (classical)

A direction network may answer ``f_z <= 0`` (or a non-finite ``f``) where the true strong field
never does: the line would reverse and ``f_x / f_z`` blow up. Such a stage gets slope 0 (the
line holds its ``x`` for that stage) and is counted; the count of stage evaluations and of lines
affected is reported, so no NaN appears silently. Lines are started at the ``P`` samples
themselves (``source`` spec of the run unless another is given), drawn with ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from physfield import data as pdata

from . import models
from .train import load_checkpoint

METHODS = ("euler", "heun", "rk4")


@dataclass
class SampleResult:
    """``samples (n, D)`` at ``z = L``, optional ``trajectories (steps+1, n, D+1)`` and ``stats``."""

    samples: np.ndarray
    trajectories: np.ndarray | None
    stats: dict

    def __str__(self):
        s = self.stats
        text = f"{s['n']} samples, {s['method']} with {s['steps']} steps from z={s['z0']:g} to z={s['z1']:g}"
        if s["fz_nonpositive"]:
            text += (f"; WARNING: f_z <= 0 (or non-finite f) at {s['fz_nonpositive']} stage evaluations on "
                     f"{s['lines_fz_nonpositive']} lines: those stages used slope 0")
        if s["nonfinite"]:
            text += f"; WARNING: {s['nonfinite']} samples are not finite"
        return text


def slope_fn(model, velocity):
    """``(z, x) -> (slope, bad)``: the slope of the module docstring and the mask of stages where a
    direction network had ``f_z <= 0`` or a non-finite output."""

    def slope(z, x):
        f = model(torch.cat([torch.full_like(x[:, :1], z), x], dim=1))
        if velocity:
            return f, torch.zeros(len(x), dtype=torch.bool, device=x.device)
        ok = (f[:, 0] > 0) & torch.isfinite(f).all(dim=1)
        s = torch.where(ok[:, None], f[:, 1:] / torch.where(ok, f[:, 0], 1.0)[:, None], 0.0)
        return s, ~ok

    return slope


def integrate(slope, x, z0, z1, steps, method="euler", keep=False):
    """Advance ``x`` (torch ``(n, D)``) from ``z0`` to ``z1``; returns ``(x, bad_count (n,), path)``
    with ``path`` the list of ``(n, D+1)`` points on the grid when ``keep``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    h = (z1 - z0) / steps
    bad = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    path = []

    def s(z, y):
        k, b = slope(z, y)
        bad.add_(b)
        return k

    for i in range(steps):
        z = z0 + i * h
        if keep:
            path.append(torch.cat([torch.full_like(x[:, :1], z), x], dim=1))
        k1 = s(z, x)
        if method == "euler":
            x = x + h * k1
        elif method == "heun":
            x = x + h / 2 * (k1 + s(z + h, x + h * k1))
        else:
            k2 = s(z + h / 2, x + h / 2 * k1)
            k3 = s(z + h / 2, x + h / 2 * k2)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + s(z + h, x + h * k3))
    if keep:
        path.append(torch.cat([torch.full_like(x[:, :1], z1), x], dim=1))
    return x, bad, path


def load_model(checkpoint, weights="ema", device="cpu"):
    """``(model, run record)`` from a checkpoint (folder or file); ``weights``: ``ema`` or ``raw``."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be ema or raw, got {weights!r}")
    ckpt = load_checkpoint(checkpoint)
    model = models.build(ckpt["run"]["net"])
    model.load_state_dict(ckpt["ema" if weights == "ema" else "model"])
    return model.to(device).eval(), ckpt["run"]


@torch.no_grad()
def sample(model, run, n, source=None, steps=100, method="euler", seed=0, trajectories=False, device="cpu"):
    """``n`` samples of the run's ``Q`` by the learned lines (module docstring); a :class:`SampleResult`."""
    cache = run["cache"]
    D, L, eps = int(cache["D"]), float(cache["L"]), float(cache["eps"])
    source = cache["source"] if source is None else source
    x0 = pdata.sample(source, n, seed=seed, dim=D)
    x = torch.from_numpy(x0.astype(np.float32)).to(device)
    velocity = run["train"]["target"] == "velocity"
    x, bad, path = integrate(slope_fn(model, velocity), x, eps, L, steps, method, keep=trajectories)
    out = x.cpu().numpy()
    stats = {"n": n, "steps": steps, "method": method, "source": source, "z0": eps, "z1": L,
             "fz_nonpositive": int(bad.sum()), "lines_fz_nonpositive": int((bad > 0).sum()),
             "nonfinite": int((~np.isfinite(out).all(axis=1)).sum())}
    paths = torch.stack(path).cpu().numpy() if trajectories else None
    return SampleResult(out, paths, stats)
