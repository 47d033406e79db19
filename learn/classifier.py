"""A small digits classifier for judging generated digits: intended-class accuracy and a
Frechet distance in its feature space (the FID recipe, with this network in place of Inception).

Data: scikit-learn's 1797 digits scaled as ``physfield.data`` scales them (``p / 8 - 1``, in
``[-1, 1]``), split once by ``SPLIT_SEED`` into ``TEST_FRACTION`` held-out rows per class and the
rest for training. The network is an MLP ``64 -> 256 -> FEATURES -> 10`` with SiLU; its
*features* are the ``FEATURES`` activations of the penultimate layer. Training: full-batch Adam
(``EPOCHS`` steps, lr ``LR``, weight decay ``WEIGHT_DECAY``), torch seed ``SEED``, on inputs with
Gaussian noise of std ``AUGMENT_NOISE`` added each epoch (so samples slightly off the data manifold are
still read as digits), a few seconds on a CPU.

The trained weights are cached in ``cache_dir`` (default ``$XDG_CACHE_HOME/physfield`` or
``~/.cache/physfield``) under a name carrying a hash of the training data and every setting
above, so any change retrains and an unchanged setup loads in milliseconds.

Frechet distance of two feature sets with means ``m1, m2`` and covariances ``S1, S2``::

    FD = |m1 - m2|^2 + tr S1 + tr S2 - 2 tr (S1^(1/2) S2 S1^(1/2))^(1/2)

(the symmetric form of ``tr (S1 S2)^(1/2)``, evaluated with symmetric eigen-decompositions, so
it is real and ``>= 0`` up to round-off).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from physfield import data as pdata

SPLIT_SEED = 0
TEST_FRACTION = 1 / 3
SEED = 0
FEATURES = 64
EPOCHS = 600
LR = 3e-3
WEIGHT_DECAY = 1e-4
AUGMENT_NOISE = 0.3
CONFIDENT = 0.9  # the probability above which a sample counts as read with confidence
VERSION = 1  # bump when the architecture or the training loop changes


def digits():
    """All digits ``(1797, 64)`` in ``[-1, 1]`` and their labels: the rows of ``physfield.data``'s
    ``digits`` source.

    Returns
    -------
    x : ndarray, shape (1797, 64)
        The digits.
    y : ndarray of int, shape (1797,)
        Their classes ``0 .. 9``.
    """
    d = pdata.get("digits")
    return d.rows, d.row_labels


def split():
    """``(train_index, test_index)``: per class, ``TEST_FRACTION`` of the rows held out (seeded).

    Returns
    -------
    train_index : ndarray of int
        The rows of :func:`digits` trained on, sorted.
    test_index : ndarray of int
        The held-out rows, sorted.
    """
    _, y = digits()
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(y == c))
        test.append(rows[: round(len(rows) * TEST_FRACTION)])
    test = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test), test


def held_out(label=None):
    """Held-out real digits ``(m, 64)``: all classes, class ``label`` only, or the classes of a
    tuple ``label``.

    Parameters
    ----------
    label : int or tuple of int, optional
        The class or classes kept; ``None``: all.

    Returns
    -------
    ndarray, shape (m, 64)
    """
    x, y = digits()
    test = split()[1]
    return x[test] if label is None else x[test][np.isin(y[test], label)]


class Net(nn.Module):
    """The classifier (module docstring): ``x (n, 64) -> logits (n, 10)``; ``body`` gives the
    ``FEATURES`` features. Made without arguments, untrained (:func:`load` gives the trained one)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, FEATURES), nn.SiLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x):
        return self.head(self.body(x))


def _key():
    x, y = digits()
    h = hashlib.sha256()
    for part in (x.tobytes(), y.tobytes(), split()[0].tobytes(),
                 repr((VERSION, SEED, FEATURES, EPOCHS, LR, WEIGHT_DECAY, AUGMENT_NOISE, torch.__version__)).encode()):
        h.update(part)
    return h.hexdigest()[:16]


def default_cache_dir():
    """Where the trained weights are cached by default: ``$XDG_CACHE_HOME/physfield``, or
    ``~/.cache/physfield`` without ``XDG_CACHE_HOME``.

    Returns
    -------
    pathlib.Path
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "physfield"


def _train():
    x, y = digits()
    train = split()[0]
    X, Y = torch.tensor(x[train], dtype=torch.float32), torch.tensor(y[train])
    torch.manual_seed(SEED)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        loss = nn.functional.cross_entropy(net(X + AUGMENT_NOISE * torch.randn_like(X)), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@lru_cache(maxsize=4)
def load(cache_dir=None):
    """The trained classifier, from the disk cache or trained now and cached (module docstring).
    Memoised per ``cache_dir`` in the process.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        The folder of the cached weights; ``None``: :func:`default_cache_dir`.

    Returns
    -------
    learn.classifier.Net
        The classifier, in eval mode.
    """
    path = Path(cache_dir or default_cache_dir()) / f"digits_classifier_{_key()}.pt"
    net = Net()
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.eval()
    with torch.random.fork_rng():
        net = _train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net


def _rows(x):
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 64:
        raise ValueError(f"the digits classifier takes (n, 64) rows (8x8 digits), got shape {x.shape}")
    return torch.tensor(x, dtype=torch.float32)


@torch.no_grad()
def predict(x, net=None):
    """Predicted class of each row of ``x (n, 64)``.

    Parameters
    ----------
    x : array_like, shape (n, 64)
        Digits (8x8, in ``[-1, 1]``); other shapes are a ``ValueError``.
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.

    Returns
    -------
    ndarray of int, shape (n,)
    """
    net = net or load()
    return net(_rows(x)).argmax(dim=1).numpy()


@torch.no_grad()
def features(x, net=None):
    """Penultimate-layer features ``(n, FEATURES)`` of the rows of ``x``, float64.

    Parameters
    ----------
    x : array_like, shape (n, 64)
        Digits (8x8, in ``[-1, 1]``); other shapes are a ``ValueError``.
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.

    Returns
    -------
    ndarray, shape (n, FEATURES), float64
    """
    net = net or load()
    return net.body(_rows(x)).double().numpy()


@torch.no_grad()
def confident_share(x, net=None, threshold=CONFIDENT):
    """Share of the rows of ``x (n, 64)`` whose largest class probability (softmax) is
    ``>= threshold``: how many samples read clearly as some digit.

    Parameters
    ----------
    x : array_like, shape (n, 64)
        Digits (8x8, in ``[-1, 1]``).
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.
    threshold : float
        The probability (default ``CONFIDENT``).

    Returns
    -------
    float
    """
    net = net or load()
    return float((net(_rows(x)).softmax(dim=1).amax(dim=1) >= threshold).double().mean())


def per_label(samples, labels, net=None):
    """For each requested label ``c`` of ``labels (n,)`` (a class-conditional sample): the share of
    its samples read as ``c``, their Frechet distance to the held-out real digits of class ``c``
    and their confident share.

    Parameters
    ----------
    samples : array_like, shape (n, 64)
        The generated digits.
    labels : array_like of int, shape (n,)
        The class each sample was asked for, in ``0 .. 9``.
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.

    Returns
    -------
    dict
        ``{c: {"n", "accuracy", "fd", "confident"}}`` for each label ``c`` present: ``n`` its
        samples, ``accuracy`` the share read as ``c``, ``fd`` the Frechet distance (``None`` for
        a single sample), ``confident`` the confident share (:func:`confident_share`).
    """
    samples, labels = np.asarray(samples), np.asarray(labels)
    if labels.shape != (len(samples),):
        raise ValueError(f"need one label per sample: {len(samples)} samples, labels of shape {labels.shape}")
    if not np.isin(labels, np.arange(10)).all():
        raise ValueError("digits labels must lie in 0..9")
    net = net or load()
    predicted = predict(samples, net)
    out = {}
    for c in np.unique(labels).tolist():
        rows = labels == c
        out[c] = {"n": int(rows.sum()), "accuracy": float((predicted[rows] == c).mean()),
                  "fd": frechet(features(samples[rows], net), features(held_out(c), net)) if rows.sum() > 1 else None,
                  "confident": confident_share(samples[rows], net)}
    return out


def accuracy(net=None):
    """Accuracy on the held-out real digits.

    Parameters
    ----------
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.

    Returns
    -------
    float
    """
    x, y = digits()
    test = split()[1]
    return float((predict(x[test], net) == y[test]).mean())


def _sqrt_psd(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def frechet(f1, f2):
    """Frechet distance between the Gaussians fitted to the rows of ``f1`` and ``f2`` (module docstring).

    Parameters
    ----------
    f1 : ndarray, shape (n1, F)
        The first feature set, at least 2 rows.
    f2 : ndarray, shape (n2, F)
        The second feature set, at least 2 rows.

    Returns
    -------
    float
        The distance, ``>= 0``.
    """
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError(f"the Frechet distance needs at least 2 samples per side, got {len(f1)} and {len(f2)}")
    m1, m2 = f1.mean(axis=0), f2.mean(axis=0)
    S1, S2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r = _sqrt_psd(S1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r @ S2 @ r), 0.0, None)).sum()
    return float(max(0.0, ((m1 - m2) ** 2).sum() + np.trace(S1) + np.trace(S2) - 2 * cross))


def report(samples, reference, intended=None, net=None):
    """Digits metrics of ``samples (n, 64)`` against the held-out real digits of the spec
    ``reference``.

    Parameters
    ----------
    samples : array_like, shape (n, 64)
        The generated digits.
    reference : str
        A digits spec (``digits`` or ``digits:C``, else a ``ValueError``): the held-out real digits
        of its classes are the reference.
    intended : int, optional
        The class the samples should read as, ``0 .. 9``; ``None``: ``C`` of ``digits:C`` (one
        class); without one no class accuracy is given (``None``).
    net : learn.classifier.Net, optional
        The classifier; ``None``: :func:`load`.

    Returns
    -------
    dict
        ``{"fd", "n_real", "confident", "confident_real", "accuracy_intended", "intended",
        "classifier_accuracy"}``: ``fd`` the Frechet distance of the features, ``n_real`` the
        number of real digits, ``confident`` the share of samples read with probability
        ``>= CONFIDENT`` (:func:`confident_share`), ``confident_real`` the same share of the
        held-out real digits, ``accuracy_intended`` the share read as ``intended`` (``None``
        without one), ``classifier_accuracy`` :func:`accuracy`.
    """
    from .evaluate import is_digits

    if not is_digits(reference):
        raise ValueError(f"digits metrics need a digits reference ('digits' or 'digits:3'), got {reference!r}")
    present = pdata.classes(reference)[1]  # validates the classes
    label = None if pdata.source.parse(reference)[1] is None else present[0] if len(present) == 1 else present
    intended = (label if isinstance(label, int) else None) if intended is None else intended
    if intended is not None and intended not in range(10):
        raise ValueError(f"the intended class must be 0..9, got {intended!r}")
    net = net or load()
    real = held_out(label)
    acc = None if intended is None else float((predict(samples, net) == intended).mean())
    return {"fd": frechet(features(samples, net), features(real, net)), "n_real": len(real),
            "confident": confident_share(samples, net), "confident_real": confident_share(real, net),
            "accuracy_intended": acc, "intended": intended, "classifier_accuracy": accuracy(net)}
