"""Progress of long work: a tqdm bar on a terminal, a periodic plain line everywhere else.

A bar redrawn in place is what a person at a terminal wants; in a log file, a CI job or under
``nohup`` it is either missing (tqdm turns itself off when its stream is not a terminal) or a
single line of carriage returns. :func:`bar` gives the tqdm bar when ``sys.stderr`` is a
terminal and otherwise a :class:`Lines` reporter with the same ``update``, ``set_postfix`` and
``close`` calls, which writes one plain line at most every :data:`EVERY` seconds (the environment
variable ``PHYSFIELD_PROGRESS_SECONDS`` sets it) and, if it wrote any, one when the work ends
(work shorter than :data:`EVERY` stays silent)::

    train: 1200/3000 steps (40%), 52.1 steps/s, 0:00:34 left, loss=0.0123
"""

from __future__ import annotations

import datetime
import os
import sys
import time

from tqdm.auto import tqdm

EVERY = 30.0  # seconds between two plain progress lines


class Lines:
    """A progress reporter that writes plain lines (see the module docstring).

    Parameters
    ----------
    total : int
        The amount of work, in ``unit``.
    desc : str
        What is being done, the start of each line.
    unit : str
        The unit of the work (``"step"``, ``"line"``, ``"pt"``).
    initial : int
        Work already done (a resumed run).
    every : float
        Seconds between two lines.
    file : file-like
        Where the lines go (default ``sys.stderr``).
    """

    def __init__(self, total, desc, unit, initial=0, every=EVERY, file=None):
        self.total, self.desc, self.unit, self.n, self.every = total, desc, unit, initial, every
        self.file = file or sys.stderr
        self.start_n, self.start = initial, time.monotonic()
        self.last, self.postfix, self.closed = self.start, {}, False

    def update(self, k=1):
        """Count ``k`` more units done; write a line when :attr:`every` seconds have passed."""
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(now)

    def set_postfix(self, refresh=False, **values):
        """Values shown at the end of the next lines (``loss=...``)."""
        self.postfix = values

    def close(self):
        """Write the final line (once), when earlier lines were written."""
        if not self.closed:
            self.closed = True
            if self.last > self.start:
                self._write(time.monotonic())

    def _write(self, now):
        done, elapsed = self.n - self.start_n, now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.unit == "%":  # a share of the work (of total 100), such as the gap covered by lines
            parts = [f"{self.desc}: {self.n}%", f"{rate:.3g} %/s"]
        else:
            parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100 * self.n / max(self.total, 1):.0f}%)",
                     f"{rate:.3g} {self.unit}s/s"]
        if rate > 0 and self.n < self.total:
            parts.append(f"{datetime.timedelta(seconds=round((self.total - self.n) / rate))} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.file, flush=True)


def ended_lines(bar, n_lines):
    """The ``on_step`` of :func:`physfield.lines.follow_arc` that advances ``bar`` by the lines that
    ended since the last step (the follower reports the lines still going).

    Parameters
    ----------
    bar : tqdm.tqdm or Lines
        A reporter of ``n_lines`` lines (:func:`bar`).
    n_lines : int
        The number of lines followed.

    Returns
    -------
    callable
        ``on_step(active)``.
    """
    done = [0]

    def on_step(active):
        bar.update(n_lines - active - done[0])
        done[0] = n_lines - active

    return on_step


def gap_covered(bar, z0, z1):
    """The ``on_step`` of :func:`physfield.lines.follow_z` that advances ``bar`` (of total 100) to
    the percentage of the gap from ``z0`` to ``z1`` covered (the follower reports the level
    reached; adaptive steps have no step count known in advance).

    Parameters
    ----------
    bar : tqdm.tqdm or Lines
        A reporter of 100 units (:func:`bar`).
    z0, z1 : float
        The ends of the lines.

    Returns
    -------
    callable
        ``on_step(z)``.
    """
    done = [0]

    def on_step(z):
        now = min(100, int(100 * (z - z0) / (z1 - z0)))
        bar.update(now - done[0])
        done[0] = now

    return on_step


def bar(total, desc, unit="it", initial=0, enabled=True):
    """A progress reporter for ``total`` units of work.

    Parameters
    ----------
    total : int
        The amount of work.
    desc : str
        What is being done.
    unit : str
        The unit of the work.
    initial : int
        Work already done.
    enabled : bool
        ``False``: report nothing (a tqdm bar that is turned off).

    Returns
    -------
    tqdm.tqdm or Lines
        A tqdm bar on ``sys.stderr`` when it is a terminal, else :class:`Lines`; both take
        ``update(k)``, ``set_postfix(**values)`` and ``close()``.
    """
    if not enabled or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=False,
                    file=sys.stderr)
    return Lines(total, desc, unit, initial, float(os.environ.get("PHYSFIELD_PROGRESS_SECONDS", EVERY)))
