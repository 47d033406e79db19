"""The record of a learn run, typed: what it was trained on and how, read once from its checkpoint.

A checkpoint stores the record as plain values (``run`` in ``checkpoint.pt``, also written to
``run.json``): the training settings, the network's spec, the attributes of the targets cache it
was trained on and the steepest target slope. :meth:`RunRecord.from_dict` turns them into one
object that sampling, checking and likelihoods read instead of unpacking the dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from physfield.targets import Run

from . import regression
from .train import TrainConfig


@dataclass(frozen=True)
class RunRecord:
    """A learn run.

    Parameters
    ----------
    targets : physfield.targets.Run
        The run that wrote the targets cache (its field, data specs ``source`` (``P``) and
        ``target`` (``Q``), ``L``, ``eps``, dimension, classes, ...).
    train : learn.train.TrainConfig
        The training settings (``train.target`` names the regression target).
    net : dict
        The network's spec (:func:`learn.models.spec`), from which it is rebuilt.
    n : int
        The number of training points in the cache.
    steepest : float or None
        The steepest target slope ``|u_x| / u_z`` (:func:`learn.train.steepest_target`).
    """

    targets: Run
    train: TrainConfig
    net: dict
    n: int
    steepest: float | None = None

    @classmethod
    def from_dict(cls, record):
        """The record a checkpoint stores (``checkpoint["run"]``), typed.

        Parameters
        ----------
        record : dict
            ``checkpoint["run"]`` (also ``run.json``): ``"train"`` (settings unknown to
            :class:`learn.train.TrainConfig` are dropped), ``"net"``, ``"cache"`` (the cache's
            attributes with its ``n``) and optionally ``"steepest"``.

        Returns
        -------
        RunRecord
        """
        known = {f.name for f in fields(TrainConfig)}
        return cls(Run.from_attrs(record["cache"]), TrainConfig(**{k: v for k, v in record["train"].items() if k in known}),
                   dict(record["net"]), int(record["cache"]["n"]), record.get("steepest"))

    @property
    def D(self):
        """The data dimension."""
        return self.targets.dim

    @property
    def L(self):
        """The plate distance."""
        return self.targets.field.L

    @property
    def eps(self):
        """Where lines start: ``z = eps`` above the source plate."""
        return self.targets.eps

    @property
    def field(self):
        """The exact field the targets came from (a physfield field)."""
        return self.targets.field

    @property
    def lines(self):
        """How the field's lines are followed: ``"z"`` or ``"arc"``."""
        return self.field.lines

    @property
    def regression(self):
        """The regression target the net learned (:class:`learn.regression.Target`)."""
        return regression.get(self.train.target)

    @property
    def n_classes(self):
        """The number of classes of a conditional net, ``None`` otherwise."""
        return self.net.get("n_classes")
