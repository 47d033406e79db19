"""learn: the torch learner and sampler of physfield's fields (the README's "Learning the field"). ::

    learn train  --targets cache.h5 --out RUN --steps 2000     # f(z, x) regresses the cached targets
    learn sample --checkpoint RUN --n 2000 -o samples.npy      # follow dx/dz = f_x / f_z from P to Q
    learn eval   --samples samples.npy --reference 8gaussians  # W2 (POT) and MMD, --png scatter
    learn eval   --samples s.npy --reference digits:3 --classify 3 --inputs in.npy   # digits metrics
    learn check  --checkpoint RUN                              # the learned lines, measured

Modules: ``data`` (shuffled, chunk-aware batches from the cache, pure in ``(seed, step)``),
``models`` (MLP with a sinusoidal ``z`` embedding; a small UNet for image caches), ``train``
(Adam, EMA, clipping, warm-up, checkpoints, exact ``--resume``), ``sample`` (Euler, Heun, RK4 in ``z``,
``f_z <= 0`` counted; nets of a Coulomb cache in arc length, lines counted as arrived, reversed,
leaked or lost; both by :mod:`physfield.lines`), ``slope`` (a net as the right-hand side of its
lines), ``guidance`` (labels and classifier-free guidance), ``regression`` (what a net regresses),
``record`` (a run's typed record), ``logprob`` (likelihoods), ``check`` (the learned lines' diagnostics),
``evaluate`` (W2, MMD, input-output distance, scatter or image grid), ``classifier`` (a small
digits classifier: accuracy of the intended class, Frechet distance). It reads training targets
through ``physfield.targets.open_cache`` and the public physfield API only; physfield never
imports torch.

The functions ``train``, ``sample``, ``check`` and ``evaluate`` live in the modules of the same
names (``learn.train.train``, ...); the package binds only names that shadow no module.
"""

import importlib

#: the public names, each from its module; imported on first use, so ``import learn`` (and the
#: ``learn`` command's start) does not load torch and every module at once
_FROM = {"TrainConfig": "train", "TrainResult": "train", "load_checkpoint": "train", "SampleResult": "sample",
         "load_model": "sample", "RunRecord": "record", "log_prob": "logprob", "mmd": "evaluate"}
_MODULES = ("check", "classifier", "data", "distributed", "evaluate", "guidance", "logprob", "models", "pictures",
            "record", "regression", "sample", "slope", "train")

__all__ = [*_FROM, *_MODULES]


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
