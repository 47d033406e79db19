"""Backends: where and how a field's sums are computed, chosen once per bound field.

A backend is one object with a documented interface (:class:`Backend`); the fields call it and
never compare backend names. Registered backends (:data:`BACKENDS`):

- ``numpy``  the reference: the formulas line by line, every pair's centre, offset, Gaussian and
  slope formed explicitly (:mod:`physfield.kernels.reference`); the yardstick the others are
  tested against.
- ``numba``  the CPU: vectorised pair kernels and BLAS products (:mod:`physfield.kernels.engine`
  over :mod:`physfield.kernels.numba_cpu`).
- ``cupy``   a CUDA GPU: the same composition over ``numba.cuda`` kernels and cuBLAS products
  (:mod:`physfield.kernels.numba_cuda`), arrays held by CuPy.

``get_backend("auto")`` is ``cupy`` when CuPy sees a CUDA device and ``numba`` otherwise.

Interface (every method takes and returns arrays of :attr:`Backend.xp`)::

    asarray(x, dtype)            x on this backend, C-contiguous, in dtype
    gaussian_path(...)           per point log E_z, the slope E_x / E_z and the ESS of a
                                 superposition of Gaussian paths (Backend.gaussian_path)
    coulomb(...)                 per point the shifted Coulomb sum (Backend.coulomb)
    unit_rows(U, log_e)          the unit direction and log|E| from gaussian_path's slope and
                                 log E_z, in place
    prepare_pairs,               what those need of the charges alone, made once by bind
    prepare_charges
    kernels                      the fast backends' kernel module; its cores_to is the thread
                                 policy the engine applies (the CPU's cores to the pair kernels or
                                 to BLAS; nothing to share on a GPU)

Module functions for any array: :func:`is_device_array`, :func:`array_module`, :func:`to_host`.
"""

from __future__ import annotations

import functools
import numpy as np

from . import engine, reference


def is_device_array(x):
    """True for a CuPy (or any ``__cuda_array_interface__``) array."""
    return hasattr(x, "__cuda_array_interface__")


def array_module(x):
    """``cupy`` for a device array, ``numpy`` otherwise."""
    if is_device_array(x):
        import cupy

        return cupy
    return np


def to_host(x):
    """A NumPy array of ``x`` (a copy from the device for a CuPy array)."""
    return x.get() if is_device_array(x) else np.asarray(x)


class Backend:
    """Base of the backends: ``name``, the array module ``xp`` and the kernel calls.

    Subclasses set :attr:`name`, :meth:`available` and :attr:`xp`; the fast ones set
    :attr:`kernels` (a module of row kernels run by :mod:`physfield.kernels.engine`).
    """

    name = None
    kernels = None
    #: whether the backend computes on a GPU (a Ray task of it then holds one)
    gpu = False

    @classmethod
    def available(cls):
        """Whether this backend can run on this machine."""
        return True

    @property
    def xp(self):
        return np

    def __repr__(self):
        return f"<backend {self.name}>"

    def asarray(self, x, dtype=None):
        xp = self.xp
        return xp.ascontiguousarray(xp.asarray(x, dtype=dtype))

    def prepare_pairs(self, A, B, I, J, logw, gemm):
        """What :meth:`gaussian_path` needs of the charges and the plan's support alone
        (:func:`physfield.kernels.engine.prepare_paths`)."""
        return engine.prepare_paths(self.kernels, self.xp, A, B, I, J, logw, gemm)

    def gaussian_path(self, X, t, sigma, s, L, A, B, I, J, logw, gemm, prepared, out):
        """Superposition of Gaussian paths at points ``(z, X)``, ``t = z / L``.

        Pair ``k = (i_k, j_k)`` of the plan with weight ``pi_k = exp(logw_k)`` contributes
        ``pi_k phi_k (1, v_k)`` with ``phi_k = N(x; c_k(z), sigma(z)^2 I)``, ``c_k = (1 - t) a + t b``
        and ``v_k = (b - a)/L + s(z) (x - c_k)``. Returns ``log E_z = log sum_k pi_k phi_k``
        (float64), the slope ``E_x / E_z = sum_k w_k v_k`` (``w = softmax(log pi + log phi)``,
        in the dtype of ``X``, written into ``out``, an array of the shape of ``X`` that may be a
        strided view) and ``ess = 1 / sum_k w_k^2``. ``prepared``: :meth:`prepare_pairs` of
        ``A``, ``B``, ``I``, ``J``, ``logw``, ``gemm``.

        The fast form (module :mod:`physfield.kernels.engine`): with ``R``, ``C`` the row and
        column sums of ``w``, ``sum_k w_k v_k = (1/L + s (1 - t)) sum_i R_i (x - a_i) + (s t - 1/L)
        sum_j C_j (x - b_j)``, so the ``D``-dimensional work is ``O((N + M) D)`` per point.
        """
        xp = self.xp
        inv2s2 = 0.5 / (sigma * sigma)
        st = s * t
        lse, ess, slope = engine.path_terms(self.kernels, xp, X, t, inv2s2, s - st + 1 / L, st - 1 / L, prepared, out)
        lse += X.shape[1] / 2 * xp.log(inv2s2 / np.pi)  # - D/2 log(2 pi sigma^2)
        return lse, slope, ess

    def unit_rows(self, U, log_e):
        """In place: ``U[:, 1:]`` holds the slope ``g = E_x / E_z`` and ``log_e`` is ``log E_z``
        (:meth:`gaussian_path`); afterwards ``U`` holds the unit rows ``(1, g) / sqrt(1 + |g|^2)``
        and ``log_e`` is ``log |E| = log E_z + log(1 + |g|^2) / 2``
        (:func:`physfield.kernels.rows.unit_row`, one compiled call)."""
        self.kernels.unit_rows(U, log_e)

    def prepare_charges(self, A, B, gemm):
        """What :meth:`coulomb` needs of the charges alone."""
        return engine.plates(self.xp, A, B, gemm)

    def coulomb(self, P, L, A, B, log_qa, log_qb, gemm, prepared):
        """The Coulomb sum at points ``P = (z, x)`` with charges ``exp(log_qa)`` at ``(0, a_i)`` and
        ``-exp(log_qb)`` at ``(L, b_j)``: ``E = exp(shift) / |S^D| * V``.

        Returns ``shift`` (float64), ``V`` (the dtype of ``P``), ``ess`` and ``r2min``, the
        smallest squared distance to a charge per point (``None`` when every distance was formed
        without underflow, as the reference does), below which the caller takes the nearest
        charge alone.
        """
        xp = self.xp
        z = P[:, 0].astype(np.float64)
        shift, vz, vx, r2min, ess = engine.coulomb_terms(self.kernels, xp, xp.ascontiguousarray(P[:, 1:]), z, L,
                                                         A, B, xp.asarray(log_qa), xp.asarray(log_qb), gemm,
                                                         prepared)
        return shift, xp.concatenate([vz[:, None].astype(P.dtype), vx], axis=1), ess, r2min


class NumpyBackend(Backend):
    """The reference: :mod:`physfield.kernels.reference`, no identities, no matrix-product tricks."""

    name = "numpy"

    def prepare_pairs(self, A, B, I, J, logw, gemm):
        return None

    def gaussian_path(self, X, t, sigma, s, L, A, B, I, J, logw, gemm, prepared, out):
        log_ez, out[...], ess = reference.gaussian_path(X, t, sigma, s, A, B, I, J, logw, L)
        return log_ez, out, ess

    def unit_rows(self, U, log_e):
        reference.unit_rows(U, log_e)

    def prepare_charges(self, A, B, gemm):
        return None

    def coulomb(self, P, L, A, B, log_qa, log_qb, gemm, prepared):
        shift, V, ess = reference.coulomb(P, A, B, log_qa, log_qb, L)
        return shift, V, ess, None


class NumbaBackend(Backend):
    """The CPU: :mod:`physfield.kernels.numba_cpu` kernels, NumPy/BLAS products."""

    name = "numba"

    @functools.cached_property
    def kernels(self):
        from . import numba_cpu

        return numba_cpu


class CupyBackend(Backend):
    """A CUDA GPU: :mod:`physfield.kernels.numba_cuda` kernels on CuPy arrays, cuBLAS products.
    Results go back to the host unless the points were CuPy arrays."""

    name = "cupy"
    gpu = True

    @classmethod
    def available(cls):
        return gpu_available()

    @property
    def xp(self):
        import cupy

        return cupy

    @functools.cached_property
    def kernels(self):
        from . import numba_cuda

        return numba_cuda


@functools.lru_cache(maxsize=1)
def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


#: the registered backends by name
BACKENDS = {cls.name: cls for cls in (NumpyBackend, NumbaBackend, CupyBackend)}
NAMES = ("auto", *BACKENDS)


def available():
    """Names of the backends that can run here (the test suite runs over these)."""
    return [name for name, cls in BACKENDS.items() if cls.available()]


@functools.lru_cache(maxsize=None)
def get_backend(name="auto"):
    """The backend object for ``name``.

    Parameters
    ----------
    name : str or physfield.kernels.backend.Backend
        ``"auto"`` (the default: ``cupy`` when a GPU is usable, else ``numba``), or a name of
        :data:`BACKENDS` (``"numpy"``, ``"numba"``, ``"cupy"``); a :class:`Backend` is returned
        as it is.

    Returns
    -------
    physfield.kernels.backend.Backend
        One object per name: the calls are cached, so the same ``name`` gives the same object.

    Raises
    ------
    ValueError
        One-line, for an unknown backend or an unusable one (``cupy`` without CuPy and a CUDA
        GPU).
    """
    if isinstance(name, Backend):
        return name
    if name == "auto":
        name = "cupy" if gpu_available() else "numba"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")
    if not BACKENDS[name].available():
        raise ValueError(f"backend {name!r} needs CuPy and a CUDA GPU; none is usable here")
    return BACKENDS[name]()
