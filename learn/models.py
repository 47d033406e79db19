"""Networks ``f(z, x)`` for vector data.

``MLP``: ``f(z, x) = W_out h_depth``, ``h_0 = [x, e(z)]``, ``h_i = SiLU(W_i h_{i-1} + b_i)``, with
the sinusoidal embedding of ``t = z / L``::

    e(z) = [sin(pi w_k t), cos(pi w_k t)]_{k < K},   w_k = W_MAX^(k / (K - 1))   (w_0 = 1)

(``K = emb / 2`` frequencies, geometric from 1 to ``W_MAX``): smooth in ``z`` at low frequency,
able to resolve the plates' boundary layers (``s(z) ~ 1/z``) at high frequency.

``UNet`` (image data, ``shape = (C, H, W)``, ``H`` and ``W`` even): ``x`` reshaped to an image,
``h = conv(x)``; a residual block at full resolution, 2x2 average pooling, a residual block at
half resolution (``2 hidden`` channels), nearest upsampling, concatenation with the full-resolution
features, a residual block and a 3x3 convolution back to ``C`` channels give ``f_x``; ``f_z`` (for
the direction target) is a linear map of the spatial mean of the half-resolution features. Each
residual block is ``h + conv(SiLU(conv(SiLU(h)) + W e(z)))``, the embedding added per channel.

Class-conditional nets (``n_classes`` set, from a ``--conditional`` cache) take the labels too,
``f(points, labels)``: a learned embedding ``l(y)`` of size ``emb`` for ``y`` in ``0 .. n_classes``,
where ``y = n_classes`` is "no label" (:func:`none_labels`; label dropout trains it, and a missing
``labels`` argument means it). The MLP takes ``h_0 = [x, e(z), l(y)]``; the UNet adds ``l(y)`` to
its embedding of ``z`` before every residual block.

A network kind is one :class:`Net` subclass registered by name (:data:`REGISTRY`: ``mlp``,
``unet``); ``learn train --net module:Class`` reaches a user's own. ``build(spec)`` makes a
network from its JSON-able spec ``{"kind", "D", "out", "L", "hidden", "depth", "emb"[, "shape"][,
"n_classes"]}``, which is stored with a run so sampling can rebuild it (``depth`` is the MLP's;
the UNet has the fixed two levels above, ``hidden`` channels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from physfield import registry
from physfield.validate import positive_int

W_MAX = 100.0

#: the registered network kinds by name
REGISTRY = {}
#: what ``--net auto`` builds for vector and for image data
AUTO = {"vectors": "mlp", "images": "unet"}


class Net(nn.Module):
    """Base of the network kinds: ``f(points[, labels]) -> (n, out)`` for points ``(n, D+1)``,
    column 0 = z. A kind sets ``name``, ``hidden`` (its default width), ``images_only`` (it needs
    an image ``shape``) and ``params``, the spec entries its constructor takes (with
    ``n_classes``).

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`torch.nn.Module`; a kind's own constructor takes the spec entries of its
        ``params`` and ``n_classes`` (:func:`build`).
    """

    name = None
    hidden = 256
    images_only = False
    params = ("D", "out", "L", "hidden", "depth", "emb")


def register(cls):
    """Class decorator: name the :class:`Net` subclass ``cls`` by its ``name`` in :data:`REGISTRY`.

    Parameters
    ----------
    cls : type
        A :class:`Net` subclass with a ``name``.

    Returns
    -------
    type
        ``cls`` itself.
    """
    return registry.add_class(REGISTRY, Net, cls)


def get(spec):
    """The network class ``spec``. One-line ``ValueError`` otherwise.

    Parameters
    ----------
    spec : str
        A registered name (``"mlp"``, ``"unet"``) or ``"module:Class"`` (a :class:`Net` subclass).

    Returns
    -------
    type
        The :class:`Net` subclass.
    """
    return registry.lookup_class(spec, REGISTRY, Net, "network")


class SinusoidalEmbedding(nn.Module):
    """``z -> e(z)`` of size ``emb`` (even), ``t = z / L`` (see the module docstring): ``z (n,)`` ->
    ``(n, emb)``.

    Parameters
    ----------
    emb : int
        The embedding size (even): ``K = emb / 2`` frequencies.
    L : float
        The plate distance.
    """

    def __init__(self, emb, L):
        super().__init__()
        K = emb // 2
        freqs = math.pi * torch.logspace(0, math.log10(W_MAX), K) if K > 1 else torch.tensor([math.pi])
        self.register_buffer("freqs", freqs / L)

    def forward(self, z):
        angle = z[:, None] * self.freqs
        return torch.cat([angle.sin(), angle.cos()], dim=1)


class LabelEmbedding(nn.Module):
    """``y -> l(y)`` of size ``emb`` for ``y`` in ``0 .. n_classes`` (``n_classes``: no label);
    ``labels=None`` is no label for every row.

    Parameters
    ----------
    n_classes : int
        The number of classes (the table has ``n_classes + 1`` rows, the last one "no label").
    emb : int
        The embedding size.
    """

    def __init__(self, n_classes, emb):
        super().__init__()
        self.n_classes = n_classes
        self.table = nn.Embedding(n_classes + 1, emb)

    def forward(self, labels, n, device):
        if labels is None:
            labels = none_labels(self.n_classes, n, device)
        return self.table(labels.long())


def none_labels(n_classes, n, device="cpu"):
    """``n`` labels meaning "no label" (the unconditional field).

    Parameters
    ----------
    n_classes : int
        The net's number of classes: "no label" is the label ``n_classes``.
    n : int
        The number of labels.
    device : str or torch.device
        Where the labels are made (default ``"cpu"``).

    Returns
    -------
    torch.Tensor of int64, shape (n,)
    """
    return torch.full((n,), n_classes, dtype=torch.long, device=device)


@register
class MLP(Net):
    """``f(points[, labels]) -> (n, out)`` for points ``(n, D+1)``, column 0 = z (module docstring).

    Parameters
    ----------
    D : int
        The data dimension.
    out : int
        The output size (:meth:`learn.regression.Target.output_dim`).
    L : float
        The plate distance (the embedding's ``t = z / L``).
    hidden : int
        The width of the hidden layers (default 256).
    depth : int
        The number of hidden layers (default 3).
    emb : int
        The size of the ``z`` embedding, even (default 32), and of the label embedding.
    n_classes : int, optional
        The number of classes of a class-conditional net; ``None``: unconditional.
    """

    name = "mlp"

    def __init__(self, D, out, L, hidden=256, depth=3, emb=32, n_classes=None):
        super().__init__()
        self.embed = SinusoidalEmbedding(emb, L)
        self.label = LabelEmbedding(n_classes, emb) if n_classes else None
        layers, width = [], D + emb + (emb if n_classes else 0)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, out))
        self.net = nn.Sequential(*layers)

    def forward(self, points, labels=None):
        parts = [points[:, 1:], self.embed(points[:, 0])]
        if self.label is not None:
            parts.append(self.label(labels, len(points), points.device))
        return self.net(torch.cat(parts, dim=1))


class ResBlock(nn.Module):
    """The UNet's residual block ``h + conv(SiLU(conv(SiLU(h)) + W e(z)))`` (module docstring), the
    embedding added per channel: ``(h, e) -> h'`` with ``h (n, channels, H, W)``, ``e (n, emb)``.

    Parameters
    ----------
    channels : int
        The channels of ``h`` (in and out; 3x3 convolutions).
    emb : int
        The size of the embedding ``e``.
    """

    def __init__(self, channels, emb):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(emb, channels)

    def forward(self, h, e):
        a = self.conv1(nn.functional.silu(h)) + self.film(e)[:, :, None, None]
        return h + self.conv2(nn.functional.silu(a))


@register
class UNet(Net):
    """``f(points[, labels]) -> (n, out)`` for image rows of ``shape = (C, H, W)`` (module docstring).

    Parameters
    ----------
    D : int
        The data dimension, ``C H W``.
    out : int
        The output size: ``D + 1`` (the direction target: ``f_z`` is added) or ``D``.
    L : float
        The plate distance (the embedding's ``t = z / L``).
    shape : sequence of int
        The image shape ``(C, H, W)``, ``H`` and ``W`` even.
    hidden : int
        The channels at full resolution (``2 hidden`` at half resolution; default 32).
    emb : int
        The size of the ``z`` embedding, even (default 32), and of the label embedding.
    n_classes : int, optional
        The number of classes of a class-conditional net; ``None``: unconditional.
    """

    name = "unet"
    hidden = 32
    images_only = True
    params = ("D", "out", "L", "shape", "hidden", "emb")

    def __init__(self, D, out, L, shape, hidden=32, emb=32, n_classes=None):
        super().__init__()
        C, H, W = shape
        self.shape, self.fz = tuple(shape), out == D + 1
        c = hidden
        self.embed = nn.Sequential(SinusoidalEmbedding(emb, L), nn.Linear(emb, emb), nn.SiLU())
        self.label = LabelEmbedding(n_classes, emb) if n_classes else None
        self.inp = nn.Conv2d(C, c, 3, padding=1)
        self.down = ResBlock(c, emb)
        self.widen = nn.Conv2d(c, 2 * c, 1)
        self.mid = ResBlock(2 * c, emb)
        self.merge = nn.Conv2d(3 * c, c, 1)
        self.up = ResBlock(c, emb)
        self.outp = nn.Conv2d(c, C, 3, padding=1)
        self.head = nn.Linear(2 * c, 1)

    def forward(self, points, labels=None):
        e = self.embed(points[:, 0])
        if self.label is not None:
            e = e + self.label(labels, len(points), points.device)
        h = self.down(self.inp(points[:, 1:].reshape(-1, *self.shape)), e)
        m = self.mid(self.widen(nn.functional.avg_pool2d(h, 2)), e)
        u = self.merge(torch.cat([h, nn.functional.interpolate(m, scale_factor=2.0)], dim=1))
        fx = self.outp(nn.functional.silu(self.up(u, e))).flatten(1)
        return torch.cat([self.head(m.mean(dim=(2, 3))), fx], dim=1) if self.fz else fx


def spec(D, out, L, hidden=None, depth=3, emb=32, shape=None, n_classes=None, kind="auto"):
    """A validated JSON-able network spec (module docstring); one-line ``ValueError`` messages.

    Parameters
    ----------
    D : int
        The data dimension.
    out : int
        The output size (:meth:`learn.regression.Target.output_dim`).
    L : float
        The plate distance.
    hidden : int, optional
        The width (``>= 1``); ``None``: the kind's default width (its class's ``hidden``).
    depth : int
        The MLP's hidden layers, ``>= 1`` (default 3).
    emb : int
        The embedding size, even, ``>= 2`` (default 32).
    shape : sequence of int, optional
        The image shape ``(C, H, W)`` of an image cache (``C H W = D``, ``H`` and ``W`` even,
        needed by a kind with ``images_only``); ``None``: vector data.
    n_classes : int, optional
        The number of classes: a class-conditional net; ``None``: unconditional.
    kind : str
        The network kind (:func:`get`); ``"auto"`` (the default): the UNet when an image ``shape``
        is given, else the MLP.

    Returns
    -------
    dict
        ``{"kind", "D", "out", "L", "hidden", "depth", "emb"[, "shape"][, "n_classes"]}``; ``kind``
        the registered name, or the ``"module:Class"`` spec of a user's own.
    """
    auto = kind == "auto"
    cls = get(AUTO["images" if shape is not None else "vectors"] if auto else kind)
    hidden = cls.hidden if hidden is None else hidden
    for name, value, low in (("hidden", hidden, 1), ("depth", depth, 1), ("emb", emb, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if emb % 2:
        raise ValueError(f"emb must be even, got {emb}")
    recorded = cls.name if auto or kind.strip() in REGISTRY else kind.strip()  # the spec that finds it again
    net = {"kind": recorded, "D": int(D), "out": int(out), "L": float(L), "hidden": hidden, "depth": depth, "emb": emb}
    if cls.images_only:
        if shape is None:
            raise ValueError(f"the network {net['kind']} needs an image cache (data_shape); this one holds vectors")
        shape = [int(s) for s in shape]
        if len(shape) != 3 or shape[0] * shape[1] * shape[2] != D or shape[1] % 2 or shape[2] % 2:
            raise ValueError(f"the network {net['kind']} needs an image shape (C, H, W) with C H W = D = {D} "
                             f"and H, W even, got {shape}")
        net["shape"] = shape
    if n_classes is not None:
        positive_int("n_classes", n_classes)
        net["n_classes"] = n_classes
    return net


def build(net_spec):
    """The network of a spec made by :func:`spec`.

    Parameters
    ----------
    net_spec : dict
        The spec (:func:`spec`; a run's ``net``).

    Returns
    -------
    learn.models.Net
        The network, freshly initialised.
    """
    cls = get(net_spec.get("kind"))
    return cls(**{k: net_spec[k] for k in cls.params}, n_classes=net_spec.get("n_classes"))
