"""Pictures of field lines (PNG through matplotlib's Agg canvas; pyplot's backend is left alone)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3-D projection)

COLOURS = {"arrived": "tab:blue", "reversed": "tab:red", "leaked": "tab:orange", "lost": "tab:gray"}


def lines_png(result, sources, sinks, L, path, title="", max_lines=300):
    """Draw the traced lines of ``result`` (kept paths needed) in the ``(z, x1)`` plane, and for
    ``D = 2`` also in 3-D, coloured by outcome, with both plates and the charges; save as PNG."""
    if result.paths is None:
        raise ValueError("the trace kept no paths: call trace(..., keep_paths=True)")
    paths = np.stack(result.paths)  # (steps, lines, D+1)
    labels = result.outcome()
    show = np.arange(paths.shape[1])[:max_lines]
    dim = paths.shape[2] - 1
    fig = Figure(figsize=(13, 5.5) if dim == 2 else (7, 5.5))  # Agg, without touching pyplot's backend
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2 if dim == 2 else 1, 1)
    _draw(ax, paths, labels, show, sources, sinks, L, axes=(0, 1))
    ax.set_xlabel("z")
    ax.set_ylabel("x1")
    if dim == 2:
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        _draw(ax3, paths, labels, show, sources, sinks, L, axes=(0, 1, 2))
        ax3.set_xlabel("z")
        ax3.set_ylabel("x1")
        ax3.set_zlabel("x2")
    counts = ", ".join(f"{k} {np.mean(labels == k):.0%}" for k in COLOURS if np.any(labels == k))
    fig.suptitle(f"{title}  ({counts})" if title else counts)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _draw(ax, paths, labels, show, sources, sinks, L, axes):
    for i in show:
        ax.plot(*[paths[:, i, a] for a in axes], color=COLOURS[labels[i]], lw=0.6, alpha=0.7)
    src = np.column_stack([np.zeros(len(sources)), sources])
    snk = np.column_stack([np.full(len(sinks), L), sinks])
    ax.scatter(*[src[:, a] for a in axes], s=6, color="black", label="sources (P, z = 0)")
    ax.scatter(*[snk[:, a] for a in axes], s=6, color="tab:green", label="sinks (Q, z = L)")
    if len(axes) == 2:
        ax.axvline(0, color="black", lw=1)
        ax.axvline(L, color="tab:green", lw=1)
        ax.add_artist(ax.legend(loc="upper left", fontsize=7))
        ax.legend(handles=[Line2D([], [], color=c, label=k) for k, c in COLOURS.items()],
                  loc="lower right", fontsize=7)

