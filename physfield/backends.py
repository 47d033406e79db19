"""Backend choice: ``"numpy"`` (reference), ``"numba"`` (CPU), ``"cupy"`` (GPU), ``"auto"``.

``auto`` picks ``cupy`` when CuPy is installed and a CUDA device is usable, ``numba`` otherwise.
:func:`kernels` returns the kernel module and array module that :mod:`physfield.engine` runs on.
"""

from __future__ import annotations

import functools

import numpy as np

NAMES = ("auto", "numpy", "numba", "cupy")


@functools.lru_cache(maxsize=1)
def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve(name):
    """A backend name -> the concrete backend that will run."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")
    if name == "auto":
        return "cupy" if gpu_available() else "numba"
    if name == "cupy" and not gpu_available():
        raise ValueError("backend 'cupy' needs CuPy and a CUDA GPU; none is usable here")
    return name


def kernels(name):
    """``(kernel module, array module)`` for ``"numba"`` or ``"cupy"``."""
    if name == "numba":
        from . import cpu

        return cpu, np
    import cupy

    from . import gpu

    return gpu, cupy


def is_device_array(x):
    """True for a CuPy (or any ``__cuda_array_interface__``) array."""
    return hasattr(x, "__cuda_array_interface__")


def array_module(x):
    """``cupy`` for a device array, ``numpy`` otherwise."""
    if is_device_array(x):
        import cupy

        return cupy
    return np


def xp_for(backend):
    """The array module a concrete backend computes with."""
    if backend == "cupy":
        import cupy

        return cupy
    return np


def to_host(x):
    return x.get() if is_device_array(x) else np.asarray(x)
