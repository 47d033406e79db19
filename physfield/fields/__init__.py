"""Fields: the protocol every field implements, the registry, and the fields themselves.

``base`` (:class:`Field`, :class:`Bound`, :data:`CLAIMS`, the registry: :func:`register`,
:func:`get`, :func:`build`, :func:`from_params`), ``gaussian_path`` (:class:`GaussianPathField`,
the strong field's family), ``strong`` (:class:`StrongField`, IFM), ``coulomb``
(:class:`CoulombField`, EFM), ``pair`` (:class:`PairField`, user fields from one pair's field).
A new field is one module here (or in the user's own code, named ``module:Class``).
"""

from .base import CLAIMS, REGISTRY, Bound, Field, build, from_params, get, names, register
from .coulomb import CoulombField
from .gaussian_path import GaussianPathField
from .pair import PairField
from .strong import StrongField

__all__ = ["Field", "Bound", "CLAIMS", "REGISTRY", "register", "get", "build", "from_params", "names",
           "GaussianPathField", "StrongField", "CoulombField", "PairField"]
