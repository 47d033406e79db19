"""physfield: exact strong-interaction (IFM) and Coulomb (EFM) fields between two data plates.

    import physfield as pf
    strong = pf.StrongField(L=6.0, sigma0=1.0, d=0.5)
    u, log_norm = strong.direction(points, sources, sinks, plan="independent")

See ``SPEC.md`` sections 1-3 and 8 for the mathematics and the public surface.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data, plans, targets
from .coulomb import CoulombField
from .strong import StrongField
from .trace import TraceResult, trace

try:
    __version__ = version("physfield")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["StrongField", "CoulombField", "TraceResult", "trace", "plans", "data", "targets", "__version__"]
