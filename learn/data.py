"""Training batches from a targets cache, shuffled, reproducible from ``(seed, step)``.

The stream of rows is an endless sequence of epochs; epoch ``e`` visits every row once:

1. the cache's row chunks (the HDF5 chunking, ``C`` rows each) are permuted by the generator
   ``SeedSequence([seed, e])``;
2. consecutive groups of ``K`` permuted chunks form *blocks* (``K`` chunks fit in
   ``buffer_bytes``); block ``b`` is read chunk by chunk (contiguous reads, never the whole
   file) and its rows are permuted by ``SeedSequence([seed, e, b])``;
3. the epoch's order is the concatenation of the shuffled blocks.

Batch ``k`` holds stream positions ``[k B, (k + 1) B)``, so it is a pure function of
``(seed, k)``: ``--resume`` needs only the step to continue with the same data. A cache that fits
in ``buffer_bytes`` is read once into memory and treated as a single chunk, which makes each
epoch a uniform random permutation of all rows.

The regression target of each row is the cached unit direction encoded by the run's
:class:`learn.regression.Target` (``direction``: as it is; ``velocity``: the slope in ``t = z/L``).

A conditional cache (``physfield targets --conditional``) adds each row's class: batches are then
``(points, targets, labels)``, shuffled together.
"""

from __future__ import annotations

import numpy as np

from physfield.validate import positive_int

from . import regression

BUFFER_BYTES = 1 << 30


class Batches:
    """Batch ``k`` of ``(points (B, D+1), targets (B, out))`` float32 arrays via :meth:`get`, and
    ``labels (B,)`` int64 for a conditional cache (the stream of the module docstring).

    Parameters
    ----------
    cache : physfield.targets.Cache
        An open targets cache with at least one point (else a ``ValueError``); it must stay open
        while batches are read.
    batch : int
        The batch size ``B``, ``>= 1``.
    seed : int
        The seed of the shuffles (default 0).
    target : str or learn.regression.Target
        The regression target (:func:`learn.regression.resolve`; default ``"direction"``, and
        ``"auto"`` resolved for the cache's field); the resolved target is kept as ``target``.
    buffer_bytes : int
        The memory for one block of rows (default ``BUFFER_BYTES``, 1 GiB); a cache whose rows
        fit is read into memory once.
    """

    def __init__(self, cache, batch, seed=0, target="direction", buffer_bytes=BUFFER_BYTES):
        self.target = regression.resolve(target, cache)
        positive_int("batch", batch)
        self.cache, self.batch, self.seed = cache, batch, int(seed)
        self.n = len(cache)
        if self.n == 0:
            raise ValueError(f"{cache.path} holds no points")
        self._sets = (cache.points, cache.targets) + ((cache.labels,) if cache.labels is not None else ())
        row_bytes = 4 * (cache.points.shape[1] + cache.targets.shape[1] + len(self._sets) - 2)
        if self.n * row_bytes <= buffer_bytes:
            self.chunk, self.per_block = self.n, 1
            self._rows = tuple(ds[()] for ds in self._sets)
        else:
            self.chunk = (cache.points.chunks or (self.n,))[0]
            self.per_block = max(1, buffer_bytes // (self.chunk * row_bytes))
            self._rows = None
        self.n_chunks = -(-self.n // self.chunk)
        self._epoch = None  # (e, block chunk lists, block starts)
        self._block = None  # ((e, b), (points, targets[, labels]))

    def _read(self, lo, hi):
        return tuple(a[lo:hi] for a in (self._sets if self._rows is None else self._rows))

    def _layout(self, e):
        """Chunks of each block of epoch ``e`` and the stream offset where each block starts."""
        if self._epoch is None or self._epoch[0] != e:
            order = np.random.default_rng(np.random.SeedSequence([self.seed, e])).permutation(self.n_chunks)
            blocks = [np.sort(order[i:i + self.per_block]) for i in range(0, self.n_chunks, self.per_block)]
            sizes = [sum(min(self.chunk, self.n - c * self.chunk) for c in blk) for blk in blocks]
            self._epoch = (e, blocks, np.concatenate([[0], np.cumsum(sizes)]))
        return self._epoch[1], self._epoch[2]

    def _shuffled_block(self, e, b):
        if self._block is None or self._block[0] != (e, b):
            blocks, _ = self._layout(e)
            parts = [self._read(c * self.chunk, min(self.n, (c + 1) * self.chunk)) for c in blocks[b]]
            arrays = [np.concatenate(column) for column in zip(*parts)]
            perm = np.random.default_rng(np.random.SeedSequence([self.seed, e, b])).permutation(len(arrays[0]))
            self._block = ((e, b), tuple(a[perm] for a in arrays))
        return self._block[1]

    def rows(self, start, stop):
        """Stream positions ``[start, stop)`` as ``(points, unit directions[, labels])``.

        Parameters
        ----------
        start : int
            The first stream position (across epochs: position ``p`` is row ``p mod n`` of epoch
            ``p // n``'s order).
        stop : int
            The position after the last, ``> start``.

        Returns
        -------
        tuple of ndarray
            ``points (stop - start, D+1)``, the cached unit directions ``(stop - start, D+1)`` and,
            for a conditional cache, the labels ``(stop - start,)``, as stored.
        """
        pieces = []
        while start < stop:
            e, pos = divmod(start, self.n)
            _, starts = self._layout(e)
            b = int(np.searchsorted(starts, pos, side="right")) - 1
            block = self._shuffled_block(e, b)
            lo = pos - starts[b]
            take = min(stop - start, len(block[0]) - lo)
            pieces.append(tuple(a[lo:lo + take] for a in block))
            start += take
        return tuple(np.concatenate(column) for column in zip(*pieces))

    def get(self, k, lo=0, hi=None):
        """Rows ``[lo, hi)`` (default: all ``B``) of batch ``k``: points and the regression target
        (see the module docstring), and the labels (int64) of a conditional cache. Data-parallel
        ranks take disjoint ``[lo, hi)``.

        Parameters
        ----------
        k : int
            The batch (the training step), ``>= 0``.
        lo : int
            The first row of the batch taken (default 0).
        hi : int, optional
            The row after the last taken; ``None``: ``B``.

        Returns
        -------
        tuple of ndarray
            ``(points, targets)`` or ``(points, targets, labels)``: ``points (hi - lo, D+1)``,
            ``targets (hi - lo, out)`` (:meth:`learn.regression.Target.encode`), ``labels
            (hi - lo,)`` int64.
        """
        hi = self.batch if hi is None else hi
        P, U, *labels = self.rows(k * self.batch + lo, k * self.batch + hi)
        U = self.target.encode(U, self.cache.attrs["L"])
        return (P, U, labels[0].astype(np.int64)) if labels else (P, U)
