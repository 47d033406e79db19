"""Log-likelihood of points on the target plate under the learned transport (change of variables).

A sample of ``learn sample`` is the end at ``z = L`` of the line ``dx/dz = s(z, x)`` started at
``z = eps`` from ``x(eps) ~ P`` (:mod:`learn.sample`). Along a line the density of the transported
points obeys the instantaneous change of variables (Chen et al., "Neural ordinary differential
equations", NeurIPS 2018, Theorem 1)::

    d log p_z(x(z)) / dz = -div_x s(z, x(z))

so the density ``q`` of the samples at a point ``x`` on ``Q``'s plate is found by following its
line back from ``z = L`` to ``z = eps``::

    log q(x) = log p_P(x(eps)) - int_eps^L div_x s(z, x(z)) dz

integrated together with ``x(z)`` by :func:`physfield.lines.follow_z` (RK4 by default, or
adaptive steps whose tolerances then cover ``I`` too) on the state ``(x, I)``,
``dI/dz = div_x s``. ``log p_P`` is the source's closed-form density
(:func:`physfield.data.log_density`: ``gaussian``, ``8gaussians``, ``mixture``).

The divergence is exact (the trace of the Jacobian, its ``D`` rows from one backward pass
batched over the basis vectors, :func:`divergence`) up to ``EXACT_MAX_D`` dimensions; beyond it
Hutchinson's estimator ``div s ~ mean_k e_k^T (ds/dx) e_k`` with ``probes`` Rademacher vectors
``e_k`` held fixed along each line (FFJORD, Grathwohl et al., ICLR 2019); each probe gives an unbiased estimate of ``log q(x)``, and their standard error over the probes is
reported per point as the estimate's spread.

The slope is the sampler's (:func:`learn.slope.slope_fn`, without the steepness cap, which
would break the divergence), for the run's net, label and guidance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from physfield import data as pdata
from physfield import lines
from physfield.progress import bar as progress_bar
from physfield.progress import gap_covered

from .guidance import check_labels, conditioned
from .slope import slope_fn

EXACT_MAX_D = 64
#: the dtypes :func:`log_prob` computes in
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class LogProb:
    """The result of :func:`log_prob`: ``logp (n,)``, its standard error ``spread (n,)``, the
    line's start ``x0 (n, D)`` at ``z = eps`` and how the divergence was taken (``exact``,
    ``probes``). ``str()`` of it is a one-line summary (mean ``log q``, and the standard error's
    mean and max for Hutchinson's estimator).

    Parameters
    ----------
    logp : ndarray, shape (n,)
        ``log q(x)`` of each point (the mean over the probes for Hutchinson's estimator).
    spread : ndarray, shape (n,)
        The standard error of ``logp`` over the probes (zeros for the exact divergence).
    x0 : ndarray, shape (n, D)
        The start at ``z = eps`` of each point's line.
    exact : bool
        Whether the divergence was exact.
    probes : int
        The number of Hutchinson probes (0 for the exact divergence).
    evaluations : int
        The evaluations of the slope and its divergence (each on all ``n`` lines).
    """

    logp: np.ndarray
    spread: np.ndarray
    x0: np.ndarray
    exact: bool
    probes: int
    evaluations: int = 0

    def __str__(self):
        how = "exact divergence" if self.exact else f"Hutchinson's estimator, {self.probes} probes"
        text = f"{len(self.logp)} points: mean log q {self.logp.mean():.4f} ({how}, {self.evaluations} evaluations)"
        if not self.exact:
            text += f"; standard error per point: mean {self.spread.mean():.3g}, max {self.spread.max():.3g}"
        return text


#: rows of one batched backward pass (basis or probe vectors times points)
BATCH_ROWS = 1 << 16


def divergence(s, x, probes=None):
    """``div_x s`` at each row, exact or Hutchinson's estimate, from batched backward passes.

    The exact divergence is the trace of the Jacobian ``ds/dx``: the vector-Jacobian products
    with the ``D`` basis vectors ``e_i`` give its rows, ``div s = sum_i (e_i^T ds/dx)_i``.
    Hutchinson's estimate for a probe ``e`` is ``e^T (ds/dx) e``. Either way the products are
    one backward pass batched over the vectors (``torch.autograd.grad`` with
    ``is_grads_batched``), at most :data:`BATCH_ROWS` vector-point rows at a time, instead of one
    pass per vector (:func:`divergence_loop`, the reference it is tested against).

    Parameters
    ----------
    s : torch.Tensor, shape (n, D)
        The slope, computed from ``x`` with autograd.
    x : torch.Tensor, shape (n, D)
        The points, with ``requires_grad``.
    probes : torch.Tensor, shape (K, n, D), optional
        Rademacher vectors; ``None``: the exact divergence.

    Returns
    -------
    torch.Tensor, shape (n, 1) or (n, K)
        The exact divergence, or one estimate per probe.
    """
    n, D = x.shape
    vectors = torch.eye(D, dtype=x.dtype, device=x.device)[:, None, :].expand(D, n, D) if probes is None else probes
    step = max(1, BATCH_ROWS // max(n, 1))
    products = [torch.autograd.grad(s, x, vectors[k:k + step], retain_graph=True, is_grads_batched=True)[0]
                for k in range(0, len(vectors), step)]
    jac = torch.cat(products)  # (D, n, D): rows of ds/dx; or (K, n, D): e^T ds/dx
    if probes is None:
        return torch.diagonal(jac, dim1=0, dim2=2).sum(dim=1, keepdim=True)
    return (jac * probes).sum(dim=2).T


def divergence_loop(s, x, probes=None):
    """The reference of :func:`divergence`: one backward pass per basis vector or probe.

    Parameters
    ----------
    s : torch.Tensor, shape (n, D)
        The slope, computed from ``x`` with autograd.
    x : torch.Tensor, shape (n, D)
        The points, with ``requires_grad``.
    probes : torch.Tensor, shape (K, n, D), optional
        Rademacher vectors; ``None``: the exact divergence.

    Returns
    -------
    torch.Tensor, shape (n, 1) or (n, K)
        The exact divergence, or one estimate per probe.
    """
    if probes is None:
        return sum(torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0][:, i]
                   for i in range(x.shape[1]))[:, None]
    return torch.stack([(torch.autograd.grad((s * e).sum(), x, retain_graph=True)[0] * e).sum(dim=1)
                        for e in probes], dim=1)


def divergence_slope(slope, D, probes=None):
    """The slope of the augmented state ``y = (x, I_1..I_K)`` for :func:`physfield.lines.follow_z`:
    ``(s(z, x), div_x s)``, the divergence exact (one column) or one Hutchinson estimate per probe
    (``K`` columns).

    Parameters
    ----------
    slope : callable
        ``slope(z, x) -> (s, bad)`` (:func:`learn.slope.slope_fn`), differentiable in ``x``.
    D : int
        The data dimension: the first ``D`` columns of ``y`` are ``x``.
    probes : torch.Tensor, shape (K, n, D), optional
        Rademacher vectors, one set per probe; ``None``: the exact divergence (:func:`divergence`).

    Returns
    -------
    callable
        ``augmented(z, y) -> (dy/dz, bad)`` for ``y (n, D + K)`` (``K = 1`` for the exact
        divergence): the slope ``s (n, D)`` and the divergences ``(n, K)``, detached, and the
        slope's ``bad`` mask.
    """

    def augmented(z, y):
        with torch.enable_grad():
            x = y[:, :D].detach().requires_grad_(True)
            s, bad = slope(z, x)
            d = divergence(s, x, probes)
        return torch.cat([s.detach(), d.detach()], dim=1), bad

    return augmented


def log_prob(model, run, points, steps=100, method="rk4", exact=None, probes=8, seed=0, labels=None, guidance=None,
             device="cpu", progress=False, precision="float64", rtol=1e-6, atol=1e-6):
    """``log q(x)`` of the rows of ``points (n, D)`` under the learned transport (module
    docstring), computed in ``precision`` on a copy of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The run's net (:func:`learn.sample.load_model`); it is left as it is.
    run : learn.record.RunRecord
        The run's record (a run whose lines are followed in ``z``; arc-length runs are refused).
    points : array_like, shape (n, D)
        The finite points ``x`` on ``Q``'s plate.
    steps : int
        The steps of the ``z`` grid from ``L`` back to ``eps`` (default 100; an adaptive method's
        first trial step is ``(L - eps) / steps``).
    method : str
        ``"euler"``, ``"heun"``, ``"rk4"`` (the default), or the adaptive ``"bs32"`` or ``"dopri5"``.
    exact : bool, optional
        The exact divergence; ``None`` (the default): exact when ``D <= EXACT_MAX_D``, else
        Hutchinson's estimator.
    probes : int
        The number ``>= 2`` of Hutchinson vectors (default 8), when the divergence is not exact.
    seed : int
        The seed of the Hutchinson vectors (default 0).
    labels : array_like of int, shape (n,), optional
        A conditional run's class per point, as in :func:`learn.sample.sample`.
    guidance : float, optional
        The guidance ``w``, as in :func:`learn.sample.sample`.
    device : str or torch.device
        Where the lines are followed (default ``"cpu"``).
    progress : bool
        Report the steps back to ``P`` (:func:`physfield.progress.bar`).
    precision : str
        ``"float64"`` (the default) or ``"float32"``: the dtype of the net's copy, the lines and
        the divergence (``bench/bench_logprob.py`` measures what float32 changes).
    rtol, atol : float
        The tolerances of an adaptive method on ``(x, I)`` (default ``1e-6`` each).

    Returns
    -------
    LogProb
    """
    D, L, eps = run.D, run.L, run.eps
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != D:
        raise ValueError(f"points must be rows (n, {D}) for this run, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or Inf")
    if run.lines == "arc":
        raise ValueError("log-likelihoods follow lines in z; this run's field is followed in arc length")
    labels = None if labels is None else np.asarray(labels)
    guidance = check_labels(run, None if labels is None else labels.tolist(), guidance, len(points))
    exact = D <= EXACT_MAX_D if exact is None else bool(exact)
    if not exact and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 2):
        raise ValueError(f"Hutchinson's estimator needs probes >= 2 (for its spread), got {probes!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64)).to(device)
    net = conditioned(copy.deepcopy(model).to(dtype), y, guidance)  # the caller's model is left as it is
    slope = slope_fn(net, run.regression, None, L)
    x = torch.from_numpy(points).to(device=device, dtype=dtype)
    if exact:
        e, K = None, 1
    else:
        g = torch.Generator(device="cpu").manual_seed(seed)
        e = (torch.randint(0, 2, (probes, len(x), D), generator=g) * 2 - 1).to(device=device, dtype=x.dtype)
        K = probes
    state = torch.cat([x, torch.zeros(len(x), K, dtype=x.dtype, device=device)], dim=1)
    bar = progress_bar(100, "logprob", "%", enabled=progress)
    res = lines.follow_z(divergence_slope(slope, D, e), state, L, eps, steps, method, on_step=gap_covered(bar, L, eps),
                         rtol=rtol, atol=atol)
    bar.close()
    end = res.x
    x0, integral = end[:, :D].cpu().double().numpy(), end[:, D:].cpu().double().numpy()  # integral = int_L^eps div dz
    estimates = pdata.log_density(run.targets.source, x0)[:, None] + integral
    spread = np.zeros(len(x0)) if exact else estimates.std(axis=1, ddof=1) / np.sqrt(K)
    return LogProb(estimates.mean(axis=1), spread, x0, exact, 0 if exact else K, res.evaluations)
