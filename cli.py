"""Console scripts ``physfield`` and ``learn``. ::

    physfield check --field strong             # property table of the IFM field
    physfield check --field coulomb --json     # the EFM capacitor, machine-readable
    physfield trace --field strong --plot lines.png     # field lines and how they end
    physfield trace --field strong --sweep-L 6,20,40    # both fields as L grows
    physfield targets --field strong --n 100000 -o cache.h5   # training targets to HDF5

A field is a registered name (``strong``, ``coulomb``) or ``module:Class``, a user's importable
field class (:mod:`physfield.fields`); ``--L``, ``--sigma0``, ``--d`` and ``--param NAME=VALUE``
are passed to its constructor. ``check`` draws ``--n`` sources and sinks from the data specs
(``physfield.data``), builds the field and plan, measures its properties (:mod:`physfield.report`)
and marks each one: ``pass``/``fail`` for what the field claims, ``measured`` for facts that are
no claim (the Coulomb field's reversal and leakage). Exit status: 0 when every claimed property
holds, 1 when one fails, 2 on bad input (a one-line ``Error: ...``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path

import click
import numpy as np

import physfield as physfield_package
from physfield import fields as pf_fields
from physfield import plans as pf_plans
from physfield.kernels.backend import NAMES as BACKENDS
from physfield.lines import METHODS
from physfield.targets.sampler import NOISE, PLAN, Z_SCHEDULE, Z_SCHEDULES
from physfield.tracing import METHOD as TRACE_METHOD
from physfield.tracing import RTOL as TRACE_RTOL
from physfield.validate import one_line


USER_CODE_FAILED = 3  # exit status when a user's own code (a field, plan, source, net, ...) raises
INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT), as a shell reports it
_OURS = tuple(Path(p).resolve() for p in (physfield_package.__path__[0], Path(__file__).parent / "learn"))
_LIBRARIES = tuple({Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


def _origin(frame):
    """Whose code ``frame`` runs: ``"ours"`` (physfield, learn, this file), ``"library"`` (an
    installed package or the standard library) or ``"user"``."""
    name = frame.f_code.co_filename
    if name.startswith("<"):
        return "library"
    path = Path(name).resolve()
    if path == Path(__file__).resolve() or any(path.is_relative_to(p) for p in _OURS):
        return "ours"
    return "library" if any(path.is_relative_to(p) for p in _LIBRARIES) else "user"


def one_line_errors(fn):
    """The errors of a command, each reported as the user can act on it.

    Bad input (a ``ValueError`` or ``OSError`` that this project or a library it called raised:
    shapes, values, missing or unwritable files) is one ``Error:`` line, exit status 2. An exception raised in a user's own
    code (a field's ``profile``, a plan, a data source, ...) is a first ``Error:`` line naming the
    user's function and where it is, then the user's traceback, exit status
    :data:`USER_CODE_FAILED`. Ctrl-C is one line saying what the interrupted work kept (a targets
    cache keeps its committed points), exit status :data:`INTERRUPTED`. Anything else is this
    project's bug: Python's traceback as it is.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:  # Ctrl-C: what the work kept, one line, the shell's status 130
            click.echo(f"Interrupted{': ' + str(exc) if str(exc) else ''}", err=True)
            click.get_current_context().exit(INTERRUPTED)
        except Exception as exc:
            stack = [(frame, line, _origin(frame)) for frame, line in traceback.walk_tb(exc.__traceback__)]
            innermost = [origin for _, _, origin in stack if origin != "library"][-1:]  # who called last
            if isinstance(exc, (ValueError, OSError)) and innermost != ["user"]:
                raise click.UsageError(one_line(exc)) from None
            mine = [(frame, line) for frame, line, origin in stack if origin == "user"]
            if not mine:
                raise
            (entry, _), (frame, line) = mine[0], mine[-1]
            calls = " -> ".join(dict.fromkeys(f.f_code.co_qualname for f in (entry, frame)))  # entry -> innermost
            click.echo(f"Error: your code raised {type(exc).__name__} in {calls} "
                       f"({frame.f_code.co_filename}:{line}): {one_line(exc)}", err=True)
            traceback.print_exception(exc, file=sys.stderr)
            click.get_current_context().exit(USER_CODE_FAILED)

    return wrapper


class OutputFile(click.Path):
    """A file a command writes: a missing folder of it is created (one line if that fails)."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.fail(f"cannot create the folder of {path}: {one_line(exc)}", param, ctx)
        return path


def parse_params(items):
    """``("NAME=VALUE", ...)`` of ``--param`` -> a dict; numbers become floats (ints when whole)."""
    params = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip().isidentifier():
            raise ValueError(f"--param takes NAME=VALUE, got {item!r}")
        try:
            number = float(value)
            whole = number.is_integer() and "." not in value and "e" not in value.lower()
            params[name.strip()] = int(number) if whole else number
        except ValueError:
            params[name.strip()] = value
    return params


def registered(get, keep=("auto",)):
    """A click callback for an option naming a registered kind or ``module:name``: the value,
    stripped, once ``get(value)`` accepts it (else a one-line usage error); ``keep``: values
    passed as they are."""
    def check(ctx, param, value):
        if value in keep:
            return value
        try:
            get(value)
        except ValueError as exc:
            raise click.BadParameter(one_line(exc)) from None
        return value.strip()

    return check


def learn_kind(module):
    """``get`` of the learn module ``module`` (imported when an option is parsed: torch is loaded
    only by the learn commands)."""
    return lambda value: importlib.import_module(f"learn.{module}").get(value)


def plan_option(default, help_text):
    """``--plan``: a registered plan name or ``module:function``."""
    names = "|".join(pf_plans.names())
    return click.option("--plan", default=default, show_default=True, callback=registered(pf_plans.get, ()),
                        metavar=f"[{names}|module:function]", help=help_text)


def field_parameters():
    """``{name: help}`` of the constructor parameters of the registered fields but ``L``, in the
    fields' own words (:meth:`physfield.fields.Field.parameter_docs`) with their defaults."""
    found = {}
    for kind in pf_fields.names():
        cls = pf_fields.get(kind)
        docs, signature = cls.parameter_docs(), inspect.signature(cls)
        for name in cls.parameter_names()[1:]:
            default = signature.parameters[name].default
            text = f"{kind}: {docs.get(name, name)}" + ("" if default is None else f" [default: {default}]")
            found[name] = f"{found[name]}; {text}" if name in found else text
    return found


FIELD_PARAMETERS = field_parameters()


def collect_field_params(given, extra):
    """The field's keyword parameters from a command's options: each ``--NAME`` of
    :data:`FIELD_PARAMETERS` that was given (popped from ``given``), then ``--param NAME=VALUE``."""
    params = {name: given.pop(name) for name in FIELD_PARAMETERS}
    return {**{k: v for k, v in params.items() if v is not None}, **parse_params(extra)}


def stack(options):
    """A decorator applying ``options`` (click options) in the order listed."""
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


#: the options that choose a field, its data and its parameters: check, trace and targets
field_options = stack([
    click.option("--field", "spec", required=True, metavar="NAME|module:Class",
                 help=f"{', '.join(pf_fields.names())}, or a user field class module:Class; trace takes several, "
                      "comma-separated."),
    click.option("--source", default="gaussian", show_default=True, help="data spec of the sources on z = 0."),
    click.option("--target", default="8gaussians", show_default=True, help="data spec of the sinks on z = L."),
    click.option("--dim", type=click.IntRange(min=1), default=None,
                 help="dimension of bare gaussian specs [default: the other side's, else 2]."),
    click.option("--L", "L", type=float, default=inspect.signature(pf_fields.Field).parameters["L"].default,
                 show_default=True, help="plate distance."),
    *[click.option(f"--{name}", type=float, default=None, help=text) for name, text in FIELD_PARAMETERS.items()],
    click.option("--param", "extra", multiple=True, metavar="NAME=VALUE",
                 help="a parameter of the field's constructor (repeatable)."),
    click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                 help="seeds the data and everything random."),
    click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True),
])

#: check's and trace's charges and output
measure_options = stack([
    click.option("--n", type=click.IntRange(min=1), default=256, show_default=True, help="charges per side."),
    plan_option("paired", "the coupling of the charges."),
    click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON only."),
])

#: check's and trace's line stepper
line_options = stack([
    click.option("--method", type=click.Choice(METHODS), default=TRACE_METHOD, show_default=True,
                 help="the lines' steps: fixed (euler, heun, rk4) or adaptive (bs32, dopri5)."),
    click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=TRACE_RTOL, show_default=True,
                 help="rtol = atol of the adaptive methods."),
])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="physfield")
def physfield():
    """Exact strong-interaction (IFM) and Coulomb (EFM) fields between two data plates."""


@physfield.command()
@field_options
@measure_options
@line_options
@click.option("--only", default=None, metavar="NAME,...",
              help="measure only these checks (comma-separated row names) [default: all].")
@one_line_errors
def check(spec, source, target, dim, n, plan, L, extra, seed, backend, as_json, method, rtol, only, **given):
    """Measure a field's properties and mark each one pass or fail.

    The field is built between --n samples of --source (z = 0) and of --target (z = L).
    Every property is measured; those the field claims are marked pass or fail (strong: all of
    them; coulomb: Gauss's law and zero divergence, its reversal and leakage are measured).
    Exit status: 0 all claimed properties hold, 1 one fails, 2 bad input.
    """
    from physfield import report as checks_report

    field = pf_fields.build(spec, L=L, **collect_field_params(given, extra))
    only = None if only is None else [name.strip() for name in only.split(",") if name.strip()]
    report = checks_report.check(field, source, target, n, dim, plan, backend, seed, only, progress=not as_json,
                                 method=method, rtol=rtol)
    click.echo(json.dumps(report, indent=2) if as_json else checks_report.text(report))
    click.get_current_context().exit(0 if report["passed"] else 1)


@physfield.command()
@field_options
@measure_options
@click.option("--lines", type=click.IntRange(min=1), default=512, show_default=True, help="field lines to trace.")
@click.option("--max-steps", type=click.IntRange(min=1), default=4000, show_default=True,
              help="steps in arc length after which a line is lost.")
@line_options
@click.option("--plot", type=OutputFile(), default=None,
              help="write a PNG of the lines in the (z, x1) plane (and in 3-D for D = 2).")
@click.option("--sweep-L", "sweep", default=None,
              help="comma-separated plate distances: trace the field(s) on the same data at each L.")
@one_line_errors
def trace(spec, source, target, dim, n, plan, L, extra, seed, backend, as_json, lines, max_steps, method, rtol, plot,
          sweep, **given):
    """Trace field lines and report how they end.

    --field may list several fields, comma-separated (strong,coulomb): each is traced on the same
    data. Lines start flux-weighted on small spheres around the sources and are followed in arc
    length. Reported: the fractions that arrive at a sink, reverse (back behind z = 0), leak
    (through z = L away from every sink) or are lost, and those that met E_z < 0 (turned);
    straightness (length / chord of the arrived lines); the flux error (net line crossings of
    planes, a backward crossing counting -1); W2 between the arrived endpoints and Q.
    """
    import physfield as pf

    Ls = [L] if sweep is None else [float(v) for v in sweep.split(",") if v.strip()]
    if not Ls:
        raise ValueError("--sweep-L needs at least one plate distance")
    A, B, line_seed = pf.data.draw_pair(source, target, n, seed, dim)
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    results = pf.tracing.sweep(specs, Ls, A, B, collect_field_params(given, extra), plan=plan, n_lines=lines,
                               seed=line_seed, max_steps=max_steps, keep_paths=plot is not None, backend=backend,
                               progress=not as_json, method=method, rtol=rtol)
    if plot is not None:
        from physfield import plot as plotting

        field, res = results[0]
        plotting.lines_png(res, A, B, field.L, plot, title=f"{field!r}, {source} -> {target}, plan {plan}")
    if as_json:
        runs = [{"field": field.spec(), "L": field.L, **res.stats} for field, res in results]
        click.echo(json.dumps({"source": source, "target": target, "D": int(A.shape[1]), "n": n, "plan": plan,
                               "seed": seed, "runs": runs}, indent=2))
    else:
        click.echo(f"physfield trace: {source} -> {target}, D={A.shape[1]}, n={n} per side, plan={plan}, "
                   f"{lines} lines, seed={seed}\n")
        click.echo(pf.tracing.table(results))
        if plot is not None:
            click.echo(f"\nlines drawn to {plot}")


@physfield.command()
@field_options
@click.option("--n", type=click.IntRange(min=1), required=True, help="training points to store.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True, help="pairs per minibatch B.")
@plan_option(PLAN, "minibatch coupling; optimal (IFM-MB) measured best, paired is the IFM paper's.")
@click.option("--reg", type=float, default=0.05, show_default=True, help="sinkhorn regularisation (relative).")
@click.option("--noise", type=float, default=None,
              help="spread of the training points in units of t = z/L, noise sqrt(min(t, 1 - t)) "
                   f"[default: {NOISE}, the best measured; the same at every L].")
@click.option("--lambda", "lam", type=float, default=None,
              help="the IFM paper's knob instead of --noise: spread lambda sqrt(min(z, L - z)).")
@click.option("--z-schedule", type=click.Choice(list(Z_SCHEDULES)), default=Z_SCHEDULE, show_default=True,
              help="law of the training points' z: uniform, or logit-normal (more points mid-gap).")
@click.option("-o", "--out", type=OutputFile(), default=None,
              help="cache file [default: data/<field>_<source>_<target>.h5].")
@click.option("--resume", is_flag=True, help="extend an existing cache with the same attributes to --n points.")
@click.option("--overwrite", is_flag=True, help="replace an existing cache.")
@click.option("--store-pairs", is_flag=True, help="keep every minibatch (verification mode).")
@click.option("--conditional", is_flag=True,
              help="store each point's class (its sink's label: digits, toy mixture components) with the "
                   "class-conditional field as its target, for learn train's conditional nets.")
@click.option("--within-class", is_flag=True,
              help="couple only samples of the same class (source and target both labelled).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="compute shards in this many local processes, then join them.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="compute shards as Ray tasks: on a local Ray started here (no ADDRESS), the running "
                   "cluster ('auto'), or host:port. Needs physfield[distributed].")
@click.option("--shard-points", type=click.IntRange(min=1), default=None,
              help="points per shard, rounded to whole batches [default: 65536].")
@click.option("--copy", is_flag=True, help="join the shards into one self-contained file (default: a virtual "
                                           "dataset reading OUT.shards/).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="attempts more for a shard that fails.")
@one_line_errors
def targets(spec, source, target, dim, n, batch, plan, reg, noise, lam, z_schedule, L, extra, seed, backend, out,
            resume, overwrite, store_pairs, conditional, within_class, workers, ray_address, shard_points, copy,
            retries, **given):
    """Cache Monte Carlo training targets (points, unit field directions, log|E|, ESS) to HDF5.

    With --workers or --ray the run is cut into shards (OUT.shards/shard-*.h5) computed in
    parallel and joined into OUT; the datasets are the same bytes as a run in one process, and
    --resume computes only the shards that are missing or incomplete.
    """
    from physfield import targets as tg
    from physfield.kernels import get_backend

    field = pf_fields.build(spec, L=L, **collect_field_params(given, extra))
    if out is None:
        out = tg.default_path(field, source, target)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    engine = tg.engines.choose(workers, ray_address, gpus=get_backend(backend).gpu)
    try:
        result = tg.generate(field, source, target, n, out, batch=batch, plan=plan, noise=noise, lam=lam, seed=seed,
                             reg=reg, dim=dim, backend=backend, resume=resume, overwrite=overwrite,
                             store_pairs=store_pairs, progress=True, engine=engine, shard_points=shard_points,
                             copy=copy, retries=retries, conditional=conditional, within_class=within_class,
                             z_schedule=z_schedule)
    finally:
        if engine is not None:
            engine.close()
    click.echo(str(result))

#: check's and trace's line stepper
line_options = stack([
    click.option("--method", type=click.Choice(METHODS), default=TRACE_METHOD, show_default=True,
                 help="the lines' steps: fixed (euler, heun, rk4) or adaptive (bs32, dopri5)."),
    click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=TRACE_RTOL, show_default=True,
                 help="rtol = atol of the adaptive methods."),
])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="physfield")
def learn():
    """The learner (torch): train on a targets cache, sample along the learned lines, evaluate."""


@learn.command("train")
@click.option("--targets", "targets_path", required=True, help="targets cache (HDF5) from `physfield targets`.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run folder (checkpoint, run.json, loss.csv).")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="rows per step (under torchrun: the global batch, shared by the processes).")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate after warm-up.")
@click.option("--ema", type=float, default=0.999, show_default=True, help="EMA decay of the weights.")
@click.option("--clip", type=float, default=1.0, show_default=True, help="gradient-norm clip (0: none).")
@click.option("--warmup", type=click.IntRange(min=0), default=100, show_default=True, help="linear warm-up steps.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: cuda when torch sees a GPU, else cpu.")
@click.option("--target", default="auto", show_default=True, callback=registered(learn_kind("regression")),
              metavar="[auto|direction|velocity|module:Class]",
              help="regress the unit direction u, or the slope dx/dt = L u_x/u_z (t = z/L); auto: velocity "
                   "where lines are followed in z (strong), direction otherwise (coulomb).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=None,
              help="MLP width [default: 256]; UNet channels [default: 32].")
@click.option("--depth", type=click.IntRange(min=1), default=3, show_default=True, help="MLP hidden layers.")
@click.option("--emb", type=click.IntRange(min=2), default=32, show_default=True, help="z embedding size (even).")
@click.option("--net", default="auto", show_default=True, callback=registered(learn_kind("models")),
              metavar="[auto|mlp|unet|module:Class]", help="auto: a UNet for image caches (data_shape), else the MLP.")
@click.option("--p-uncond", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="conditional caches: share of rows trained without their label (for --guidance).")
@click.option("--resume", is_flag=True, help="continue from the run folder's checkpoint.")
@one_line_errors
def learn_train(targets_path, out, steps, batch, lr, ema, clip, warmup, seed, device, target, checkpoint_every,
                hidden, depth, emb, net, p_uncond, resume):
    """Train f(z, x) on cached field targets (Adam, EMA, clipping, warm-up, checkpoints).

    Under torchrun (torchrun --nproc_per_node=K -m learn train ...) the K processes train
    data-parallel: --batch is the global batch, each process takes its B/K rows of it.
    """
    from learn.train import TrainConfig, train

    cfg = TrainConfig(targets_path, out, steps, batch, lr, ema, clip, warmup, seed, device, target,
                      checkpoint_every, hidden, depth, emb, net, p_uncond)
    result = train(cfg, resume=resume, progress=True)
    if result.writer:  # under torchrun: rank 0 alone reports
        click.echo(str(result))


def tolerance_options(rtol):
    """``--rtol`` and ``--atol`` of the adaptive steppers (default ``rtol`` each)."""
    def decorate(f):
        for name in ("--atol", "--rtol"):
            f = click.option(name, type=click.FloatRange(min=0), default=rtol, show_default=True,
                             help=f"{name[2:]} of the adaptive methods (bs32, dopri5).")(f)
        return f

    return decorate


def learned_lines_options(method):
    """The options that load a learned net and step its lines (``method``: the default stepper)."""
    def decorate(f):
        options = [
            click.option("--checkpoint", required=True, help="run folder or checkpoint.pt."),
            click.option("--method", type=click.Choice(METHODS), default=method, show_default=True,
                         help="fixed steps (euler, heun, rk4) or adaptive (bs32, dopri5)."),
            click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
            click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                         help="auto: cuda when torch sees a GPU, else cpu."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


@learn.command("sample")
@learned_lines_options("rk4")
@tolerance_options(1e-4)
@click.option("--n", type=click.IntRange(min=1), required=True, help="samples to draw.")
@click.option("-o", "--out", required=True, type=OutputFile(), help="samples (n, D) as .npy.")
@click.option("--source", default=None, help="P spec [default: the run's source].")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="z steps; Coulomb runs: arc-length step (L - eps) / steps.")
@click.option("--trajectories", type=OutputFile(), default=None,
              help="also save the lines (steps+1, n, D+1) as .npy.")
@click.option("--inputs", "inputs_path", type=OutputFile(), default=None,
              help="also save each sample's P start (rows as in -o) as .npy, for `learn eval --inputs`.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Coulomb runs: step cap per line [default: 10 x --steps].")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Coulomb runs: a line farther than this from Q's centre is lost [default: 10 (L + r_Q)].")
@click.option("--label", "label_args", multiple=True,
              help="conditional runs: the class to generate (repeatable), or 'all' for every class of the "
                   "run's target; --n samples per label, in label order.")
@click.option("--guidance", type=float, default=None,
              help="classifier-free guidance w: f = (1 + w) f(x | label) - w f(x | none) [default with "
                   "--label: 0.25, the best measured].")
@click.option("--labels", "labels_path", type=OutputFile(), default=None,
              help="also save each sample's label as .npy, for `learn eval --labels`.")
@one_line_errors
def learn_sample(checkpoint, n, out, source, steps, method, seed, weights, device, rtol, atol, trajectories,
                 inputs_path, max_steps, radius, label_args, guidance, labels_path):
    """Follow the learned lines dx/dz = f_x/f_z from P at z = eps to z = L.

    A Coulomb (EFM) run follows dp/dtau = f/|f| in arc length instead, and saves the lines that
    arrived inside Q's support; it reports how many leaked, reversed (went behind P) or were lost.
    """
    from learn.guidance import labels_for
    from learn.sample import load_model, sample
    from learn.train import resolve_device

    device = resolve_device(device)
    model, run = load_model(checkpoint, weights, device)
    labels = labels_for(label_args, run, n)
    if labels is None and labels_path is not None:
        raise ValueError("--labels saves the labels of a conditional sample: give --label")
    n = n if labels is None else len(labels)
    result = sample(model, run, n, source, steps, method, seed, trajectories is not None, device, max_steps, radius,
                    labels, guidance, progress=True, rtol=rtol, atol=atol)
    np.save(out, result.samples)
    if labels_path is not None:
        np.save(labels_path, labels)
    if trajectories is not None:
        np.save(trajectories, result.trajectories)
    if inputs_path is not None:
        np.save(inputs_path, result.inputs)
    click.echo(f"{result}; saved {out}")


@learn.command("logprob")
@click.option("--checkpoint", required=True, help="run folder or checkpoint.pt.")
@click.option("--points", "points_path", required=True, help="points (n, D) on Q's plate, .npy.")
@click.option("-o", "--out", required=True, type=OutputFile(), help="log q(x) (n,) as .npy.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True, help="z steps back to P.")
@click.option("--method", type=click.Choice(METHODS), default="rk4", show_default=True,
              help="fixed steps (euler, heun, rk4) or adaptive (bs32, dopri5).")
@tolerance_options(1e-6)
@click.option("--divergence", type=click.Choice(["auto", "exact", "hutchinson"]), default="auto", show_default=True,
              help="auto: exact up to D = 64, Hutchinson's estimator beyond.")
@click.option("--probes", type=click.IntRange(min=2), default=8, show_default=True,
              help="Hutchinson probes per point (their standard error is reported).")
@click.option("--spread", "spread_path", type=OutputFile(), default=None,
              help="also save the standard error of each log q(x) (Hutchinson) as .npy.")
@click.option("--label", type=click.IntRange(min=0), default=None, help="conditional runs: the class of every point.")
@click.option("--guidance", type=float, default=None,
              help="classifier-free guidance w [default with --label: 0.25, as learn sample].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="seed of the probes.")
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="dtype of the lines and the divergence.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default="ema", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@one_line_errors
def learn_logprob(checkpoint, points_path, out, steps, method, rtol, atol, divergence, probes, spread_path, label,
                  guidance, seed, precision, weights, device):
    """log q(x) of points on Q's plate under the learned transport: each point's line is followed
    back to P, with d log p/dz = -div_x(dx/dz) (exact divergence up to D = 64, else Hutchinson's
    estimator), plus log p of P at the line's start (P: gaussian, 8gaussians or mixture)."""
    from learn import evaluate as ev
    from learn.logprob import log_prob
    from learn.sample import load_model
    from learn.train import resolve_device

    device = resolve_device(device)
    points = ev.load_samples(points_path, "points")
    model, run = load_model(checkpoint, weights, device)
    labels = None if label is None else np.full(len(points), label)
    exact = None if divergence == "auto" else divergence == "exact"
    result = log_prob(model, run, points, steps, method, exact, probes, seed, labels, guidance, device, progress=True,
                      precision=precision, rtol=rtol, atol=atol)
    np.save(out, result.logp)
    if spread_path is not None:
        np.save(spread_path, result.spread)
    click.echo(f"{result}; saved {out}")


@learn.command("check")
@learned_lines_options("bs32")
@tolerance_options(1e-4)
@click.option("--n", type=click.IntRange(min=1), default=1000, show_default=True, help="learned lines to follow.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="arc-length step (L - eps) / steps; a line gets 10 x steps at most.")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON only.")
@one_line_errors
def learn_check(checkpoint, n, steps, method, seed, weights, device, rtol, atol, as_json):
    """Follow the learned lines from P in arc length and measure how they end: f_z <= 0, back
    behind P, through z = L outside Q, lost, ending off Q. Exit status 1 when a property the
    run's field claims fails."""

    from learn.check import check as check_lines
    from learn.sample import load_model
    from learn.train import resolve_device
    from physfield import report as checks_report

    device = resolve_device(device)
    model, run = load_model(checkpoint, weights, device)
    rows, _ = check_lines(model, run, n, steps, method, seed, device, progress=not as_json, rtol=rtol, atol=atol)
    passed = checks_report.passed(rows)
    if as_json:
        click.echo(json.dumps({"checkpoint": str(checkpoint), "field": run.field.params(), "checks": rows,
                               "passed": passed}, indent=2))
    else:
        click.echo(f"learn check: {checkpoint}, field {run.field.params()['kind']}\n")
        click.echo("\n".join(checks_report.rows_table(rows)))
        click.echo("\n" + checks_report.verdict(rows))
    click.get_current_context().exit(0 if passed else 1)


@learn.command("eval")
@click.option("--samples", "samples_path", required=True, help="samples .npy from `learn sample`.")
@click.option("--reference", required=True, help="data spec of Q (physfield.data); digits[:C] adds digits metrics.")
@click.option("--n", type=click.IntRange(min=2), default=2000, show_default=True, help="reference draws.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="reference seed [default: a held-out stream].")
@click.option("--bandwidth", type=float, multiple=True, help="MMD kernel bandwidth(s) [default: median heuristic].")
@click.option("--classify", type=click.IntRange(0, 9), default=None,
              help="digits: the intended class [default: C of --reference digits:C].")
@click.option("--inputs", "inputs_path", default=None,
              help="inputs .npy (`learn sample --inputs`): mean |sample - input| (shape preservation).")
@click.option("--labels", "labels_path", default=None,
              help="digits: labels .npy (`learn sample --labels`): per requested class, the share read as it, "
                   "the Frechet distance to its real digits and the confident share.")
@click.option("--png", type=OutputFile(), default=None,
              help="scatter of 2-D samples over the reference, or an 8x8 grid of image samples (with --labels: "
                   "a row of up to 10 per class).")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output.")
@one_line_errors
def learn_eval(samples_path, reference, n, seed, bandwidth, classify, inputs_path, labels_path, png, as_json):
    """W2 (POT, exact) and MMD of samples against held-out reference samples; for digits the
    intended-class accuracy and Frechet distance of a small classifier; input-output distance."""
    from learn import evaluate as ev

    x = ev.load_samples(samples_path)
    inputs = None if inputs_path is None else ev.load_samples(inputs_path, "inputs")
    labels = None if labels_path is None else ev.load_labels(labels_path, len(x))
    report = ev.assess(x, reference, n, ev.EVAL_SEED if seed is None else seed, list(bandwidth) or None, classify,
                       inputs, labels, png)
    click.echo(json.dumps(report) if as_json else "\n".join(ev.summary(report)))
