"""physfield: exact strong-interaction (IFM) and Coulomb (EFM) fields between two data plates. ::

    import physfield as pf
    strong = pf.StrongField(L=6.0, sigma0=1.0)   # d = L/2
    u, log_norm = strong.direction(points, sources, sinks, plan="independent")

Subpackages: :mod:`physfield.fields` (the field protocol, the registry and the fields),
:mod:`physfield.kernels` (backends and the kernels behind them), :mod:`physfield.lines` (the line
followers), :mod:`physfield.targets` (the HDF5 training cache). Modules: ``plans``, ``data``,
``tracing`` (field lines: :func:`trace`), ``metrics`` (``w2``); imported when asked for:
``checks`` and ``report`` (``physfield check``), ``validate`` (argument checks). The mathematics is in the README and in
the documentation under ``docs/``.

References
----------
- IFM: "Interaction Field Matching: Overcoming Limitations of Electrostatic Models", ICLR 2026.
- EFM: A. Kolesov, S. Manukhov, V. Palyulin, A. Korotin, "Field Matching: an Electrostatic
  Paradigm to Generate and Transfer Data", ICML 2025.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data, fields, kernels, lines, metrics, plans, progress, targets, tracing
from .fields import CoulombField, Field, GaussianPathField, PairField, StrongField
from .kernels import get_backend
from .tracing import TraceResult, trace

try:
    __version__ = version("physfield")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["Field", "StrongField", "CoulombField", "GaussianPathField", "PairField", "TraceResult", "trace",
           "get_backend", "fields", "kernels", "lines", "targets", "plans", "data", "tracing", "metrics", "progress", "__version__"]
