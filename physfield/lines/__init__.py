"""Field lines of a black-box field: one follower for NumPy, CuPy and torch arrays.

Points are rows ``p = (z, x)`` of ``(n, D+1)`` arrays, column 0 being ``z``; the sources ``P``
sit on the plate ``z = 0``, the sinks ``Q`` on ``z = L``. A field enters only as a callable, and
every array operation goes through ``array_api_compat.array_namespace`` of the input, so the
same code follows lines on the CPU, on a GPU (CuPy) or with torch tensors; results keep the
input's dtype and device. This package never imports torch.

- :mod:`~physfield.lines.zfollow`: :func:`follow_z`, lines as graphs ``x(z)`` where ``E_z > 0``;
- :mod:`~physfield.lines.arc`: :func:`follow_arc`, lines in arc length anywhere, and how each
  ends (:class:`Ends`, :data:`STATUS`); :func:`straightness`;
- :mod:`~physfield.lines.crossings`: the net flux of lines through planes (:func:`net_crossings`,
  :class:`Crossings`);
- :mod:`~physfield.lines.starts`: flux-weighted starts on spheres around charges
  (:func:`sphere_starts`);
- :mod:`~physfield.lines.rk`: the Runge-Kutta steps both followers take (:data:`METHODS`: the
  fixed steps :data:`FIXED` and the embedded pairs :data:`PAIRS` with adaptive steps).
"""

from .arc import ARRIVED, HALVINGS, LEAKED, LOST, REVERSED, STATUS, ArcLines, Ends, follow_arc, nearest_sq, straightness
from .crossings import Crossings, net_crossings
from .rk import FIXED, METHODS, PAIRS
from .starts import Starts, sphere_starts
from .zfollow import ZLines, follow_z

__all__ = ["follow_z", "ZLines", "follow_arc", "Ends", "ArcLines", "STATUS", "ARRIVED", "LEAKED", "REVERSED", "LOST",
           "HALVINGS", "nearest_sq", "straightness", "net_crossings", "Crossings", "sphere_starts", "Starts", "METHODS",
           "FIXED", "PAIRS"]
