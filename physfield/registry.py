"""Names for the kinds of things a user can swap: a registry maps names to objects, and a
``"module:name"`` spec reaches an object in the user's own importable module.

Every kind (fields, plans, ...) keeps its own dict of registered names and calls :func:`lookup`
with it, so the command line accepts a user's own field, plan, ... exactly as it accepts a built-in
one: ``--field mymodule:MyField``, ``--plan mymodule:my_plan``.
"""

from __future__ import annotations

import importlib
import os
import sys


def lookup(spec, registry, what, expected="module:name"):
    """The object named ``spec``: a key of ``registry`` or ``"module:name"`` (an attribute path
    of an importable module, the current folder included, as ``python -m`` does).

    Parameters
    ----------
    spec : str
        A registered name or ``"module:name"`` (``name`` may be dotted: ``module:Class.attr``).
    registry : dict
        The registered names of this kind.
    what : str
        The kind, for messages (``"field"``, ``"plan"``).
    expected : str
        How a user spec of this kind is written, for messages (``"module:Class"``).

    Returns
    -------
    object
        The registered object, or the module's attribute (the caller checks its type).

    Raises
    ------
    ValueError
        One line naming the problem: an unknown name, a module that does not import, a missing
        attribute.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a {what} is a registered name or {expected}, got {spec!r}")
    spec = spec.strip()
    if spec in registry:
        return registry[spec]
    module_name, colon, qualname = spec.partition(":")
    if not colon:
        raise ValueError(f"unknown {what} {spec!r}; expected one of {', '.join(sorted(registry))} or {expected}")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({exc})") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{what} {spec!r}: module {module_name!r} has no {qualname!r}")
    return obj


def add_class(registry, base, cls):
    """Register the subclass ``cls`` of ``base`` under its ``name`` attribute in ``registry`` (a
    class decorator's body); ``TypeError`` for anything else. Returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, base) and isinstance(cls.name, str)):
        raise TypeError(f"register needs a {base.__name__} subclass with a name, got {cls!r}")
    registry[cls.name] = cls
    return cls


def lookup_class(spec, registry, base, what, hint=None):
    """The subclass of ``base`` named ``spec`` (:func:`lookup`, ``"module:Class"`` for a user's
    own); a one-line ``ValueError`` when it names something else (``hint``: what to subclass)."""
    cls = lookup(spec, registry, what, "module:Class")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{what} {spec.strip()!r} is not a {hint or base.__module__ + '.' + base.__name__} subclass")
    return cls
