"""learn: the torch learner and sampler of physfield's fields (the README's "Learning the field").

    learn train  --targets cache.h5 --out RUN --steps 2000     # f(z, x) regresses the cached targets
    learn sample --checkpoint RUN --n 2000 -o samples.npy      # follow dx/dz = f_x / f_z from P to Q
    learn eval   --samples samples.npy --reference 8gaussians  # W2 (POT) and MMD, --png scatter
    learn eval   --samples s.npy --reference digits:3 --classify 3 --inputs in.npy   # digits metrics
    learn check  --checkpoint RUN                              # the learned lines, measured

Modules: ``data`` (shuffled, chunk-aware batches from the cache, pure in ``(seed, step)``),
``models`` (MLP with a sinusoidal ``z`` embedding; a small UNet for image caches), ``train``
(Adam, EMA, clipping, warm-up, checkpoints, exact ``--resume``), ``sample`` (Euler, Heun, RK4 in ``z``,
``f_z <= 0`` counted; nets of a Coulomb cache in arc length, lines counted as arrived, reversed,
leaked or lost; both by :mod:`physfield.lines`), ``check`` (the learned lines' diagnostics),
``evaluate`` (W2, MMD, input-output distance, scatter or image grid), ``classifier`` (a small
digits classifier: accuracy of the intended class, Frechet distance). It reads training targets
through ``physfield.targets.open_cache`` and the public physfield API only; physfield never
imports torch.
"""
