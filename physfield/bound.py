"""A field with its charges fixed: ``field.bind(sources, sinks, plan)``.

Everything that depends on the charges and the plan alone (validation, the plan's support or
marginals, the charges on the backend in the compute dtype, the centred copies and norms of the
GEMM form, the pair distances ``|a_i - b_j|^2``) is done once; each ``direction(points)`` call
then does only the per-point work. ``field.direction(points, sources, sinks, plan, ...)`` is
``field.bind(sources, sinks, plan, ...).direction(points)``, so both give the same bits. Bind once
when the same charges are evaluated many times (field lines, probes of a check); the arrays
given are used as they are at the time of the call to ``bind``.
"""

from __future__ import annotations

import numpy as np

from . import backends, engine, validate


class Bound:
    """Base of ``StrongField.bind`` / ``CoulombField.bind``: the validated charges (``sources``
    ``(N, D)``, ``sinks`` ``(M, D)``, ``dim``), the resolved ``backend`` and GEMM choice; the
    subclass adds its plan data and ``_prepare`` / ``direction``."""

    def __init__(self, field, sources, sinks, backend="auto", method="auto"):
        self.source_field = field
        self.sources, self.sinks = validate.charges(sources, sinks)
        self.dim = self.sources.shape[1]
        self.backend = backends.resolve(backend)
        self.gemm = engine.use_gemm(method, self.dim)
        self._charges = {}

    def __repr__(self):
        return (f"{self.source_field!r}.bind(N={len(self.sources)}, M={len(self.sinks)}, D={self.dim}, "
                f"backend={self.backend!r})")

    def _points(self, points):
        """Validated ``points``, the compute dtype, the array module and whether they are on the GPU."""
        points = validate.points(points, self.dim)
        dtype = validate.compute_dtype(points, self.sources, self.sinks)
        return points, dtype, backends.xp_for(self.backend), backends.is_device_array(points)

    def charges(self, dtype):
        """``(A, B, prepared)``: the charges on the backend in ``dtype`` and what ``_prepare``
        makes of them, computed on the first call for each dtype."""
        key = np.dtype(dtype)
        if key not in self._charges:
            xp = backends.xp_for(self.backend)
            A = xp.ascontiguousarray(xp.asarray(self.sources, dtype=key))
            B = xp.ascontiguousarray(xp.asarray(self.sinks, dtype=key))
            self._charges[key] = (A, B, None if self.backend == "numpy" else self._prepare(xp, A, B))
        return self._charges[key]

    def field(self, points):
        """The field ``E`` itself, ``(n, D+1)`` float64: ``exp(log_norm) * u`` (underflows to 0
        or overflows at large ``D``; use :meth:`direction` there)."""
        u, log_norm = self.direction(points)
        xp = backends.array_module(u)
        with np.errstate(over="ignore", invalid="ignore"):  # 0 * inf is masked to 0
            return xp.where(u == 0, 0.0, u.astype(np.float64) * xp.exp(log_norm)[:, None])
