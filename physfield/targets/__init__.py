"""Monte Carlo training targets: a pure sampler of batches, and the HDF5 store they go to.

``sampler`` (:func:`~physfield.targets.sampler.make_run`, :func:`~physfield.targets.sampler.batch`:
batch ``k`` of a run), ``generation`` (:func:`generate`), ``schema`` (the cache's datasets and
attributes), ``writer`` (points written, files published atomically), ``reader``
(:func:`open_cache`, :class:`Cache`), ``shards`` (a run cut into shard files joined by an HDF5
virtual dataset) and ``engines`` (where shards are computed: ``Local``, ``Pool``, ``Ray``).
"""

from . import engines, shards

from .sampler import NOISE, OUTSIDE, Z_SCHEDULE, Z_SCHEDULES, Run, batch, make_run
from .generation import default_path, generate
from .reader import Cache, open_cache
from .schema import ATTRS, COMPRESSION, FORMAT, SCHEMA_VERSION
from .writer import GenerateResult

__all__ = ["engines", "shards", "generate", "default_path", "open_cache", "Cache", "GenerateResult", "make_run", "batch", "Run", "FORMAT",
           "SCHEMA_VERSION", "ATTRS", "COMPRESSION", "NOISE", "OUTSIDE", "Z_SCHEDULE",
           "Z_SCHEDULES"]
