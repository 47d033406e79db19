"""physfield: exact strong-interaction (IFM) and Coulomb (EFM) fields between two data plates.

    import physfield as pf
    strong = pf.StrongField(L=6.0, sigma0=1.0)   # d = L/2
    u, log_norm = strong.direction(points, sources, sinks, plan="independent")

Subpackages: :mod:`physfield.fields` (the field protocol, the registry and the fields),
:mod:`physfield.kernels` (backends and the kernels behind them). Modules: ``plans``, ``data``,
``trace`` (field lines), ``checks`` and ``report`` (``physfield check``), ``targets`` (the HDF5
training cache), ``metrics`` (``w2``). The mathematics is in the README.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data, fields, kernels, metrics, plans, targets
from .fields import CoulombField, Field, GaussianPathField, PairField, StrongField
from .kernels import get_backend
from .trace import TraceResult, trace

try:
    __version__ = version("physfield")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["Field", "StrongField", "CoulombField", "GaussianPathField", "PairField", "TraceResult", "trace",
           "fields", "kernels", "get_backend", "metrics", "plans", "data", "targets", "__version__"]
