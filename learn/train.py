"""Regress the cached field targets with a network ``f(z, x)`` (the README's "Learning the field").

Step ``k`` (``k = 0, 1, ...``) on batch ``k`` of :class:`learn.data.Batches`::

    loss_k  = mean_batch |f(z, x) - y|^2         y = u (direction) or L u_x / u_z (velocity)
    lr_k    = lr * min(1, (k + 1) / warmup)       linear warm-up, then constant
    g       = grad loss_k, rescaled to norm <= clip (clip > 0)
    theta   <- Adam(theta, g, lr_k)
    bar     <- d_k bar + (1 - d_k) theta,         d_k = min(ema, (1 + k) / (10 + k))

On a conditional cache the net is class-conditional (:mod:`learn.models`) and regresses
``f(z, x, y')``, where ``y' = y`` (the row's class) except with probability ``p_uncond`` where it is
"no label": label dropout, so the same net also learns the unconditional field that
classifier-free guidance needs (``learn sample --guidance``).

(the EMA ``bar`` starts as a copy of ``theta``; the ramp in ``d_k`` keeps short runs from
averaging in the random initial weights). ``lr_k`` and ``d_k`` depend on ``k`` only and batch
``k`` is a pure function of ``(seed, k)``, so a run resumed from a checkpoint (weights, EMA, Adam
state, RNG states, step, data position, loss history) continues the uninterrupted loss curve
exactly (on the same device and thread count).

Under ``torchrun`` the steps are data-parallel (:mod:`learn.distributed`): ``batch`` is the global
batch, rank ``r`` of ``W`` regresses rows ``[r B/W, (r + 1) B/W)`` of batch ``k``, DDP averages the
gradients (so the step is the one-process step on the same ``B`` rows), the logged loss is the
mean over the ranks, and rank 0 alone writes the run folder.

Run folder ``out``: ``checkpoint.pt`` (written atomically every ``checkpoint_every`` steps and at
the end; it embeds the run record) and ``run.json``, the run record: training settings, network
spec and the cache's attributes (field, ``L``, ``eps``, source and target specs, plan, ...), so
``learn sample`` needs only the checkpoint. ``loss.csv`` holds the loss of every step done.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from physfield.progress import bar as progress_bar
from physfield.targets import open_cache

from . import data, distributed, models

CHECKPOINT = "checkpoint.pt"
RUN = "run.json"
STEEPEST_ROWS = 1 << 16
# settings that may change between a run and its resume
RESUMABLE = ("steps", "checkpoint_every", "out", "targets", "device")


@dataclass
class TrainConfig:
    """Settings of :func:`train` (the CLI flags of ``learn train``; the schedule of the module
    docstring). :func:`train` checks them (one-line ``ValueError``).

    Parameters
    ----------
    targets : str
        The targets cache (HDF5) of ``physfield targets``.
    out : str
        The run folder (``checkpoint.pt``, ``run.json``, ``loss.csv``).
    steps : int
        The number of optimiser steps, ``>= 1`` (default 2000); a resumed run may raise it.
    batch : int
        Rows per step ``B``, ``>= 1`` (default 256); under ``torchrun`` the global batch, shared by
        the processes.
    lr : float
        Adam's learning rate after the warm-up, ``> 0`` (default ``1e-3``).
    ema : float
        The EMA decay of the weights, in ``[0, 1)`` (default 0.999).
    clip : float
        The gradient-norm clip, ``>= 0`` (default 1; 0: no clipping).
    warmup : int
        Steps of linear learning-rate warm-up, ``>= 0`` (default 100).
    seed : int
        The seed of the weights, the data order and label dropout, ``>= 0`` (default 0).
    device : str
        ``"auto"`` (the default: ``cuda`` when torch sees a CUDA device, else ``cpu``), ``"cpu"``
        or ``"cuda"`` (:func:`resolve_device`).
    target : str
        The regression target (:func:`learn.regression.resolve`): ``"auto"`` (the default:
        ``velocity`` where the field's lines are followed in ``z``, else ``direction``),
        ``"direction"``, ``"velocity"`` or ``"module:Class"``. The run records the resolved name.
    checkpoint_every : int
        Steps between checkpoints, ``>= 1`` (default 500); one is also written at the end.
    hidden : int, optional
        The net's width (MLP) or channels (UNet); ``None`` (the default): the net's default width
        (its class's ``hidden``: 256 for the MLP, 32 for the UNet). The run records the width used.
    depth : int
        The MLP's hidden layers, ``>= 1`` (default 3).
    emb : int
        The size of the ``z`` embedding, even, ``>= 2`` (default 32).
    net : str
        The network kind (:func:`learn.models.spec`): ``"auto"`` (the default: a UNet for image
        caches, else the MLP), ``"mlp"``, ``"unet"`` or ``"module:Class"``.
    p_uncond : float
        Label dropout of a conditional cache: the probability, in ``[0, 1]``, that a row is trained
        without its label (default 0.1).
    """

    targets: str
    out: str
    steps: int = 2000
    batch: int = 256
    lr: float = 1e-3
    ema: float = 0.999
    clip: float = 1.0
    warmup: int = 100
    seed: int = 0
    device: str = "auto"
    target: str = "auto"
    checkpoint_every: int = 500
    hidden: int | None = None  # None: the net's default width (its class's hidden)
    depth: int = 3
    emb: int = 32
    net: str = "auto"
    p_uncond: float = 0.1  # label dropout of a conditional cache


@dataclass
class TrainResult:
    """What :func:`train` returns; ``str()`` of it is the line ``learn train`` prints.

    Parameters
    ----------
    out : str
        The run folder.
    step : int
        The number of steps done (the run's last step).
    losses : list of float
        The loss of every step done (mean over the ranks under ``torchrun``).
    seconds : float
        The wall-clock time of this call's training loop.
    writer : bool
        Whether this process wrote the run folder (rank 0 under ``torchrun``; the one that reports).
    """

    out: str
    step: int
    losses: list
    seconds: float
    writer: bool = True

    def __str__(self):
        last = f"; last loss {self.losses[-1]:.4g}" if self.losses else ""
        return f"{self.step} steps in {self.seconds:.1f} s{last}; checkpoint in {self.out}"


def _check(cfg):
    for name in ("steps", "batch", "checkpoint_every", "seed", "warmup"):
        value = getattr(cfg, name)
        low = 0 if name in ("seed", "warmup") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.ema < 1:
        raise ValueError(f"ema must lie in [0, 1), got {cfg.ema}")
    if not 0 <= cfg.p_uncond <= 1:
        raise ValueError(f"p_uncond must lie in [0, 1], got {cfg.p_uncond}")
    if not cfg.clip >= 0:
        raise ValueError(f"clip must be >= 0 (0: no clipping), got {cfg.clip}")
    if cfg.net != "auto":
        models.get(cfg.net)
    resolve_device(cfg.device)


def resolve_device(device):
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; ``cpu`` and ``cuda`` as
    they are, ``cuda`` without a CUDA device and anything else being a one-line ``ValueError``.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda"``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda asked but torch sees no CUDA device")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def _atomic_save(obj, path):
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path):
    """The checkpoint dict at ``path``; one-line ``ValueError`` messages.

    Parameters
    ----------
    path : str or os.PathLike
        A run folder (its ``checkpoint.pt``) or a ``.pt`` file.

    Returns
    -------
    dict
        The checkpoint, loaded on the CPU: at least ``"run"`` (the run record), ``"model"``,
        ``"ema"`` (state dicts) and ``"step"``; :func:`train` also writes ``"optimizer"``,
        ``"rng"``, ``"data"`` and ``"losses"``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise ValueError(f"{path} is not a learn checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not {"run", "model", "ema", "step"} <= set(ckpt):
        raise ValueError(f"{path} is not a learn checkpoint (missing keys)")
    return ckpt


def _run_record(cfg, cache, net_spec):
    return {"train": asdict(cfg), "net": net_spec, "cache": dict(cache.attrs, n=len(cache)),
            "field": cache.field_params, "steepest": steepest_target(cache)}


def steepest_target(cache):
    """The steepest slope ``|u_x| / u_z`` of the exact field among the first ``STEEPEST_ROWS``
    targets with ``u_z > 0``: the sampler takes no steeper step than a few times this
    (:data:`learn.sample.STEEP_FACTOR`).

    Parameters
    ----------
    cache : physfield.targets.Cache
        An open targets cache (:func:`physfield.targets.open_cache`); its ``targets`` are the unit
        directions ``u = (u_z, u_x)``.

    Returns
    -------
    float or None
        The steepest slope; ``None`` when no target of those rows has ``u_z > 0``.
    """
    u = np.asarray(cache.targets[:STEEPEST_ROWS], dtype=np.float64)
    u = u[u[:, 0] > 0]
    return float((np.linalg.norm(u[:, 1:], axis=1) / u[:, 0]).max()) if len(u) else None


def _same_settings(old, new):
    diff = [k for k in new if k not in RESUMABLE and old.get(k) != new[k]]
    if diff:
        raise ValueError(f"cannot resume: {diff[0]} was {old.get(diff[0])!r}, now {new[diff[0]]!r}")


def optimise(model, ema, opt, loss, cfg, step):
    """One optimiser step on ``loss``: linear warm-up of the learning rate over ``cfg.warmup``
    steps, gradient-norm clipping at ``cfg.clip`` (0: none), Adam, then the EMA of the weights
    with decay ``min(cfg.ema, (1 + step) / (10 + step))``.

    Parameters
    ----------
    model : torch.nn.Module
        The net being trained (its gradients are clipped).
    ema : torch.nn.Module
        The moving average of ``model``'s weights, updated in place.
    opt : torch.optim.Optimizer
        The optimiser of ``model``'s parameters; its learning rate is set for this step.
    loss : torch.Tensor
        The scalar loss of this step (back-propagated here).
    cfg : learn.train.TrainConfig
        The settings (``lr``, ``warmup``, ``clip``, ``ema``).
    step : int
        The step ``k`` (from 0), which sets the learning rate and the EMA decay.
    """
    for group in opt.param_groups:
        group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()
    decay = min(cfg.ema, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def train(cfg, resume=False, progress=False):
    """Train per ``cfg`` into the folder ``cfg.out`` (module docstring); data-parallel under
    ``torchrun`` (:mod:`learn.distributed`).

    Parameters
    ----------
    cfg : learn.train.TrainConfig
        The settings.
    resume : bool
        Continue from ``out/checkpoint.pt`` (same settings apart from ``steps`` and
        ``checkpoint_every``, and the paths and device of ``RESUMABLE``; the same cache); without
        it an existing checkpoint is refused (a missing one starts the run afresh).
    progress : bool
        Show a progress bar (on rank 0).

    Returns
    -------
    TrainResult
    """
    _check(cfg)
    world = distributed.setup(resolve_device(cfg.device))
    try:
        return _train(cfg, world, resume, progress)
    finally:
        distributed.teardown(world)


def _train(cfg, world, resume, progress):
    lo, hi = world.share(cfg.batch)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise ValueError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    with open_cache(cfg.targets) as cache:
        batches = data.Batches(cache, cfg.batch, seed=cfg.seed, target=cfg.target)
        cfg = replace(cfg, target=batches.target.name)
        net_spec = models.spec(cache.D, batches.target.output_dim(cache.D), cache.attrs["L"], cfg.hidden, cfg.depth,
                               cfg.emb, cache.attrs.get("data_shape"), cache.n_classes, kind=cfg.net)
        cfg = replace(cfg, hidden=net_spec["hidden"])
        record = _run_record(cfg, cache, net_spec)
        torch.manual_seed(cfg.seed)
        model = models.build(net_spec).to(world.device)
        ema = copy.deepcopy(model).requires_grad_(False)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        step, losses = 0, []
        if resume and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)
            _same_settings(ckpt["run"]["train"], record["train"])
            if ckpt["run"]["cache"] != record["cache"]:
                raise ValueError(f"cannot resume: {cfg.targets} is not the cache this run was trained on")
            model.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            opt.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"])
            step, losses = ckpt["step"], list(ckpt["losses"])
        net = world.wrap(model)
        if world.writer:
            out.mkdir(parents=True, exist_ok=True)
            (out / RUN).write_text(json.dumps(record, indent=2, sort_keys=True))

        def save():
            _atomic_save({"run": record, "model": model.state_dict(), "ema": ema.state_dict(),
                          "optimizer": opt.state_dict(), "rng": _rng_state(), "step": step,
                          "data": {"seed": cfg.seed, "position": step * cfg.batch}, "losses": losses},
                         ckpt_path)
            (out / "loss.csv").write_text("step,loss\n" + "".join(f"{k},{v!r}\n" for k, v in enumerate(losses)))

        t0 = time.perf_counter()
        bar = progress_bar(cfg.steps, "train", "step", initial=min(step, cfg.steps), enabled=progress and world.writer)
        while step < cfg.steps:
            P, Y, *labels = (torch.from_numpy(a).to(world.device) for a in batches.get(step, lo, hi))
            if labels:
                drop = torch.rand(len(P), device=world.device) < cfg.p_uncond
                labels = [torch.where(drop, cache.n_classes, labels[0])]
            loss = ((net(P, *labels) - Y) ** 2).sum(dim=1).mean()
            optimise(model, ema, opt, loss, cfg, step)
            losses.append(world.mean(loss.item()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if world.writer and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                save()
        bar.close()
    return TrainResult(str(out), step, losses, time.perf_counter() - t0, world.writer)
