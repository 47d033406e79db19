"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --nproc_per_node=K -m learn train ...`` starts ``K`` processes with the environment
variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` reads them and joins the process group (``gloo`` on the CPU, ``nccl`` on GPUs, one
GPU per process: ``cuda:LOCAL_RANK``). Without them (``WORLD_SIZE`` unset or 1) training is the
plain single process.

What each rank does (``learn.train``): batch ``k`` of the data stream is the same ``B`` rows for
every world size (``--batch`` is the global batch); rank ``r`` of ``W`` reads and regresses rows
``[r B/W, (r + 1) B/W)`` of it, so the ranks' shares of an epoch are disjoint and the epoch's
order depends on the seed only. DDP averages the ranks' gradients, which is the gradient of the
mean loss over the ``B`` rows: ``W`` ranks with ``B/W`` rows each take the steps one process
takes with ``B`` rows (up to float round-off). Rank 0 alone writes the run folder (checkpoint,
``run.json``, ``loss.csv``); every rank reads the checkpoint to resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, on ``device``.

    Parameters
    ----------
    rank : int
        This process's rank (default 0; rank 0 writes the run folder).
    size : int
        The number of processes ``W`` (default 1: a single process).
    device : str
        This process's device: ``"cpu"`` (the default) or ``"cuda:LOCAL_RANK"``.
    """

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def writer(self):
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0

    def share(self, batch):
        """The rows ``[lo, hi)`` of a global batch of ``batch`` rows that this rank takes.

        Parameters
        ----------
        batch : int
            The global batch ``B``, a multiple of ``size`` (else a one-line ``ValueError``).

        Returns
        -------
        lo, hi : int
            ``rank B/W`` and ``(rank + 1) B/W``.
        """
        if batch % self.size:
            raise ValueError(f"--batch {batch} is not a multiple of the {self.size} processes (it is the global batch)")
        per = batch // self.size
        return self.rank * per, (self.rank + 1) * per

    def mean(self, value):
        """The mean over the ranks of a float (the loss, for the log).

        Parameters
        ----------
        value : float
            This rank's value (every rank must call, a collective).

        Returns
        -------
        float
        """
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.size

    def wrap(self, model):
        """``model`` in DistributedDataParallel when there are several processes.

        Parameters
        ----------
        model : torch.nn.Module
            The net, on this rank's device.

        Returns
        -------
        torch.nn.Module
            ``model`` itself for a single process, else its
            ``torch.nn.parallel.DistributedDataParallel`` wrapper.
        """
        if self.size == 1:
            return model
        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def setup(device):
    """The :class:`World` of this process, joining the process group that ``torchrun`` describes
    in the environment (module docstring).

    Parameters
    ----------
    device : str
        ``"cpu"`` or ``"cuda"``; with several processes ``cuda`` becomes ``cuda:LOCAL_RANK`` (and
        that GPU the current one).

    Returns
    -------
    World
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(rank, size, device)


def teardown(world):
    """Leave the process group (after the last collective).

    Parameters
    ----------
    world : learn.distributed.World
        This process's world (nothing is done for a single process).
    """
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
