"""The pictures of ``learn eval --png`` (matplotlib, Agg backend): a scatter of 2-D samples over
the reference, or a grid of image-shaped samples (one channel, e.g. digits ``(1, 8, 8)``)."""

from __future__ import annotations

import numpy as np

from physfield import data as pdata


def picture(samples, used, ref, report, path, labels=None):
    """The PNG of :func:`learn.evaluate.assess`: an image grid when the reference has an image shape (one row of up
    to 10 per class with ``labels``), else a scatter of ``used`` over ``ref``.

    Parameters
    ----------
    samples : ndarray, shape (m, D)
        All the samples (drawn in the image grid).
    used : ndarray, shape (k, D)
        The samples :func:`evaluate` used (drawn in the scatter).
    ref : ndarray, shape (n, D)
        The reference draws (the scatter's background).
    report : dict
        The report of :func:`evaluate` (its ``"reference"`` spec, and ``"w2"`` for the title).
    path : str or os.PathLike
        The PNG file written.
    labels : ndarray of int, shape (m,), optional
        The class each sample was asked for (image data: a row of up to 10 samples per class).
    """
    reference = report["reference"]
    shape = pdata.shape(reference)
    if shape is not None and labels is not None:
        rows = np.concatenate([np.flatnonzero(labels == c)[:10] for c in np.unique(labels)])
        image_grid_png(samples[rows], shape, path, f"samples per label {', '.join(map(str, np.unique(labels)))}",
                       side=10)
    elif shape is not None:
        image_grid_png(samples, shape, path, f"{len(samples)} samples, {reference}")
    else:
        scatter_png(used, ref, path, f"{reference}: W2 {report['w2']:.3f}")


def scatter_png(samples, ref, path, title=""):
    """Scatter of 2-D ``samples`` over the reference, written to ``path`` (matplotlib Agg).

    Parameters
    ----------
    samples : ndarray, shape (m, 2)
        The samples (2-D only, else a ``ValueError``).
    ref : ndarray, shape (n, 2)
        The reference points.
    path : str or os.PathLike
        The PNG file written.
    title : str
        The plot's title (default none).
    """
    if samples.shape[1] != 2:
        raise ValueError(f"--png draws a scatter of 2-D samples; these are {samples.shape[1]}-D")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*ref.T, s=3, alpha=0.4, label="reference")
    ax.scatter(*samples.T, s=3, alpha=0.4, label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def image_grid_png(samples, shape, path, title="", side=8):
    """The first ``side x side`` samples as ``shape = (1, H, W)`` gray images in a grid, to ``path``
    (pixels clipped to the data range ``[-1, 1]``, black = -1; gray borders).

    Parameters
    ----------
    samples : ndarray, shape (m, H W)
        The samples, one flattened image per row.
    shape : tuple of int
        The image shape ``(1, H, W)`` (one channel, ``H W = D``, else a ``ValueError``).
    path : str or os.PathLike
        The PNG file written.
    title : str
        The picture's title (default none).
    side : int
        Images per row of the grid; at most ``side x side`` are drawn (default 8).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[0] != 1 or shape[1] * shape[2] != samples.shape[1]:
        raise ValueError(f"--png draws an image grid of one-channel images; samples are {samples.shape[1]}-D, "
                         f"image shape {shape}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(len(samples), side * side)
    rows = -(-k // side)
    H, W = shape[1:]
    canvas = np.zeros((rows * (H + 1) + 1, side * (W + 1) + 1))  # gray borders
    for i, img in enumerate(samples[:k].reshape(k, H, W)):
        r, c = divmod(i, side)
        canvas[1 + r * (H + 1):(r + 1) * (H + 1), 1 + c * (W + 1):(c + 1) * (W + 1)] = img
    fig, ax = plt.subplots(figsize=(side * 0.6, rows * 0.6 + 0.4))
    ax.imshow(np.clip(canvas, -1, 1), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
