"""Console scripts ``physfield`` and ``learn``.

    physfield check --field strong             # property table of the IFM field
    physfield check --field coulomb --json     # the EFM capacitor, machine-readable
    physfield trace --field strong --plot lines.png     # field lines and how they end
    physfield trace --field strong --sweep-L 6,20,40    # both fields as L grows
    physfield targets --field strong --n 100000 -o cache.h5   # training targets to HDF5

``check`` draws ``--n`` sources and sinks from the data specs (``physfield.data``), builds the field
and plan, measures the properties of SPEC sections 2 and 3 with :mod:`physfield.checks` and
marks each one: ``pass``/``fail`` for what the field claims, ``measured`` for facts that are
no claim (the Coulomb field's reversal and leakage). Exit status: 0 when every claimed property
holds, 1 when one fails, 2 on bad input (a one-line ``Error: ...``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import click
import numpy as np

PLANES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # flux planes z / L
N_INSIDE, N_OUTSIDE, N_STRING, N_IMPORTANCE = 4096, 1024, 256, 4096  # probe points, draws per plane
N_CHARGES = 4  # Gauss spheres around this many sources and as many sinks
FLUX_TOL = GAUSS_TOL = 1e-6  # quadrature; a Monte Carlo estimate may also be off by 5 standard errors
DIV_TOL = 1e-6  # |div E| / (|E| / scale), scale the local length on which |E| changes by O(1)
STEP = 1e-4  # central-difference step / local length scale
STENCIL_BUDGET = 2e7  # numbers in all divergence stencils together: fewer probe points at large D
SPHERE = 0.1  # sphere radius / distance to the nearest other charge


@dataclass
class Setup:
    """A field with its charges, plan and backend bound."""

    field: object
    A: np.ndarray
    B: np.ndarray
    plan: object
    backend: str
    rng: np.random.Generator
    support: tuple  # (i, j, log pi) of the plan's non-zero entries

    @property
    def dim(self):
        return self.A.shape[1]

    def direction(self, points):
        return self.field.direction(points, self.A, self.B, plan=self.plan, backend=self.backend)


def finite(x):
    """``x`` as a float, ``None`` (JSON ``null``) when it is not finite."""
    return float(x) if np.isfinite(x) else None


def row(name, prop, value, claim, status, method, **extra):
    """One line of the table (and one entry of ``--json``); a non-finite value fails."""
    value = finite(value)
    if value is None:
        status = "fail"
    return {"name": name, "property": prop, "value": value, "claim": claim, "status": status,
            "method": method, **extra}


def verdict(ok):
    return "pass" if ok else "fail"


def box(s, pad=0.5):
    """Bounding box of the charges, widened by ``pad`` times its extent (at least 0.1 L) per side."""
    AB = np.concatenate([s.A, s.B])
    lo, hi = AB.min(axis=0), AB.max(axis=0)
    margin = pad * np.maximum(hi - lo, 0.1 * s.field.L)
    return lo - margin, hi + margin


def flux_rows(s):
    """``|int E_z dx - 1|`` on the planes ``PLANES``: lattice quadrature for ``D <= 2``, otherwise
    importance sampling from the plan's pair mixture with widths ``tau sigma(z)``,
    ``tau = 1 + 1/(4 sqrt(D))``, which keeps the variance of the weights below ``exp(1/8) - 1``
    of the squared flux at any ``D`` (a proposal other than the field's own mixture)."""
    from physfield import checks

    L, dim = s.field.L, s.dim
    I, J, logw = s.support
    tau = 1 + 0.25 / np.sqrt(dim)
    planes = []
    for z in L * np.asarray(PLANES):
        sigma, t = float(s.field.sigma(z)), z / L
        if dim <= 2:
            centres = (1 - t) * s.A[I] + t * s.B[J]
            flux, tol = checks.flux_quadrature(s.direction, z, centres, 8 * sigma, sigma / 1.5), FLUX_TOL
        else:
            x = checks.pair_mixture_sample(s.rng, N_IMPORTANCE, s.A, s.B, I, J, logw, t, tau * sigma)
            log_q = checks.pair_mixture_logpdf(x, s.A, s.B, I, J, logw, t, tau * sigma)
            flux, se = checks.flux_importance(s.direction, z, x, log_q)
            tol = 5 * se
        planes.append((z, flux, tol))
    error = max(abs(flux - 1) for _, flux, _ in planes)
    ok = all(abs(flux - 1) <= tol for _, flux, tol in planes)
    where = f"{len(PLANES)} planes z/L={PLANES[0]}..{PLANES[-1]}"
    if dim <= 2:
        method, claim = f"{where}, lattice quadrature", f"< {FLUX_TOL:.0e}"
    else:
        method = f"{where}, importance sampling ({N_IMPORTANCE} draws each)"
        claim = f"< 5 s.e. ({max(tol for _, _, tol in planes):.2g})"
    planes = [{"z": float(z), "flux": finite(flux), "tolerance": finite(tol)} for z, flux, tol in planes]
    return [row("flux", "flux error |int E_z dx - 1|", error, claim, verdict(ok), method, planes=planes)]


def probe_rows(s, claimed):
    """``E_z`` at probe points inside, ``|E|`` at probe points outside the plates."""
    from physfield import checks

    lo, hi = box(s)
    u, log_inside = s.direction(checks.probes_inside(s.rng, N_INSIDE, s.field.L, lo, hi))
    min_ez, negative = checks.ez_stats(u)
    _, log_outside = s.direction(checks.probes_outside(s.rng, N_OUTSIDE, s.field.L, lo, hi))
    outside = checks.max_magnitude(log_outside, np.max(log_inside))
    inside = f"{N_INSIDE} points 0<z<L, 1/4 near a plate"
    return [
        row("min_ez", "min E_z/|E| inside", min_ez, "> 0" if claimed else "-",
            verdict(min_ez > 0) if claimed else "measured", inside),
        row("ez_negative", "fraction with E_z < 0 inside", negative, "= 0" if claimed else "-",
            verdict(negative == 0) if claimed else "measured", inside),
        row("max_outside", "max |E| outside / max |E| inside", outside, "= 0" if claimed else "-",
            verdict(outside == 0) if claimed else "measured",
            f"{N_OUTSIDE} points z<=0 or z>=L"),
    ]


def divergence_rows(s, scale_of, width):
    """Central-difference divergence at probe points near the data, relative to ``|E| / scale``."""
    from physfield import checks

    count = int(min(N_STRING, max(2, STENCIL_BUDGET // (2 * (s.dim + 1) ** 2))))
    P = checks.probes_strings(s.rng, count, s.A, s.B, *s.support, s.field.L, width)
    scale = scale_of(P)
    residual = checks.divergence_residual(s.direction, P, STEP * scale, scale).max()
    return [row("divergence", "divergence |div E| scale/|E|", residual, f"< {DIV_TOL:.0e}",
                verdict(residual < DIV_TOL), f"{count} points near the data, central differences")]


def strong_rows(s):
    field = s.field

    def scale(P):
        """``log phi`` changes by O(1) over ``sigma / sqrt(D)`` across and ``min(z, L - z) / D`` along."""
        z = P[:, 0]
        return np.minimum(field.sigma(z) / np.sqrt(s.dim), np.minimum(z, field.L - z) / s.dim)

    return [
        lambda: flux_rows(s),
        lambda: probe_rows(s, claimed=True),
        lambda: divergence_rows(s, scale, field.sigma),
    ]


def coulomb_rows(s):
    from scipy.spatial.distance import cdist

    from physfield import checks, plans

    L = s.field.L
    alpha, beta = plans.marginals(s.plan, s.A, s.B)
    charges = np.concatenate([checks.on_plane(0.0, s.A), checks.on_plane(L, s.B)])
    q = np.concatenate([alpha, -beta])

    def spheres():
        """Gauss's law on small spheres around a few sources and sinks; backward flux on half-spheres."""
        N, M = len(s.A), len(s.B)
        pick = np.concatenate([s.rng.choice(N, min(N, N_CHARGES), replace=False),
                               N + s.rng.choice(M, min(M, N_CHARGES), replace=False)])
        gauss, tol, back, leak = [], [], [], []
        for k in pick[q[pick] != 0]:
            dist = np.linalg.norm(charges - charges[k], axis=1)
            r = SPHERE * dist[dist > 0].min()
            enclosed = q[dist < r].sum()
            flux, se = checks.surface_flux(s.direction, charges[k], r, checks.sphere_rule(s.dim, "full", rng=s.rng))
            gauss.append(abs(flux / enclosed - 1))
            tol.append(GAUSS_TOL + 5 * se / abs(enclosed))
            half = "lower" if k < N else "upper"
            flux, _ = checks.surface_flux(s.direction, charges[k], r, checks.sphere_rule(s.dim, half, rng=s.rng))
            (back if k < N else leak).append(flux / enclosed)
        rule = "quadrature" if s.dim <= 2 else "Monte Carlo"
        ok = all(g <= t for g, t in zip(gauss, tol))
        claim = f"< {GAUSS_TOL:.0e}" if s.dim <= 2 else f"< {GAUSS_TOL:.0e} + 5 s.e. ({max(tol):.2g})"
        return [
            row("gauss", "Gauss |flux / enclosed charge - 1|", max(gauss), claim, verdict(ok),
                f"{len(gauss)} spheres r={SPHERE} x nearest charge, {rule}"),
            row("backward_flux", "flux leaving sources backwards", np.mean(back), "-", "measured",
                f"reversal: lower half-spheres, {len(back)} sources"),
            row("leakage", "flux entering sinks from behind", np.mean(leak), "-", "measured",
                f"leakage: upper half-spheres, {len(leak)} sinks"),
        ]

    def scale(P):
        """``|G| ~ r^-D`` changes by O(1) over ``r / D``, ``r`` the distance to the nearest charge."""
        return cdist(P, charges).min(axis=1) / s.dim

    return [
        spheres,
        lambda: divergence_rows(s, scale, lambda z: np.full(len(z), 0.1 * L)),
        lambda: probe_rows(s, claimed=False),
    ]


def measure(field, A, B, plan, backend, seed):
    """Run every check of ``field`` (with its charges and plan); returns the rows."""
    from tqdm import tqdm

    from physfield import backends, plans

    rng = np.random.default_rng(seed)
    plan = plans.resolve(plan, A, B)
    s = Setup(field, A, B, plan, backends.resolve(backend), rng, plans.support(plan, A, B))
    steps = (strong_rows if field.kind == "strong" else coulomb_rows)(s)
    rows = []
    for step in tqdm(steps, desc=f"checking the {field.kind} field", unit="check", leave=False,
                     disable=None, file=sys.stderr):
        rows.extend(step())
    return sorted(rows, key=lambda r: r["status"] == "measured"), s.backend


def table(report):
    """The human-readable report: a header, aligned rows, a verdict line."""
    f, c = report["field"], report["config"]
    params = " ".join(f"{k}={v:g}" for k, v in f.items() if k != "kind")
    lines = [f"physfield check: {f['kind']} field, {params}",
             (f"data: {c['source']} -> {c['target']}, D={c['dim']}, n={c['n']} per side, plan={c['plan']}, "
              f"seed={c['seed']}, backend={c['backend']}"), ""]
    cells = [("property", "value", "claim", "status", "how")]
    cells += [(r["property"], "nan" if r["value"] is None else f"{r['value']:.3g}", r["claim"], r["status"],
               r["method"]) for r in report["checks"]]
    widths = [max(len(cell[i]) for cell in cells) for i in range(4)]
    lines += ["  ".join(cell[i].ljust(widths[i]) for i in range(4)) + "  " + cell[4] for cell in cells]
    claimed = [r for r in report["checks"] if r["status"] != "measured"]
    failed = [r["name"] for r in claimed if r["status"] == "fail"]
    verdict_ = (f"all {len(claimed)} claimed properties hold" if not failed
                else f"FAILED: {', '.join(failed)} ({len(failed)} of {len(claimed)} claimed properties)")
    lines += ["", f"{verdict_}  [{report['seconds']:.1f} s]"]
    return "\n".join(line.rstrip() for line in lines)


def build_field(kind, L, sigma0, d):
    """The field of ``--field`` with its parameters (``--sigma0``/``--d`` only for strong)."""
    import physfield as pf

    if kind == "coulomb":
        if sigma0 is not None or d is not None:
            raise click.UsageError("--sigma0 and --d belong to --field strong")
        return pf.CoulombField(L=L)
    given = {k: v for k, v in (("sigma0", sigma0), ("d", d)) if v is not None}
    return pf.StrongField(L=L, **given)


def draw_data(source, target, n, dim, seed):
    """``n`` sources and sinks from the data specs, and a probe seed: three streams of ``seed``."""
    import physfield as pf

    source_seed, target_seed, probe_seed = np.random.SeedSequence(seed).generate_state(3)
    B = pf.data.sample(target, n, seed=target_seed, dim=dim)
    A = pf.data.sample(source, n, seed=source_seed, dim=dim or B.shape[1])
    return A, B, int(probe_seed)


def field_options(f):
    """The options that choose a field and its data, shared by check and trace."""
    options = [
        click.option("--field", "kind", type=click.Choice(["strong", "coulomb"]), required=True,
                     help="strong: the IFM field; coulomb: the EFM capacitor."),
        click.option("--source", default="gaussian", show_default=True, help="data spec of the sources on z = 0."),
        click.option("--target", default="8gaussians", show_default=True, help="data spec of the sinks on z = L."),
        click.option("--dim", type=click.IntRange(min=1), default=None, help="dimension D [default: that of the data]."),
        click.option("--n", type=click.IntRange(min=1), default=256, show_default=True, help="charges per side."),
        click.option("--plan", type=click.Choice(["paired", "independent", "optimal", "sinkhorn"]),
                     default="paired", show_default=True),
        click.option("--L", "L", type=float, default=6.0, show_default=True, help="plate distance."),
        click.option("--sigma0", type=float, default=None, help="string width (strong) [default: 1.0]."),
        click.option("--d", type=float, default=None, help="end length, 0 < d <= L/2 (strong) [default: 0.5]."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="seeds the data and the random points."),
        click.option("--backend", type=click.Choice(["auto", "numpy", "numba", "cupy"]), default="auto",
                     show_default=True),
        click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON only."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def physfield():
    """Exact strong-interaction (IFM) and Coulomb (EFM) fields between two data plates."""


@physfield.command()
@field_options
def check(kind, source, target, dim, n, plan, L, sigma0, d, seed, backend, as_json):
    """Measure a field's properties and mark each one pass or fail.

    The field is built between --n samples of --source (z = 0) and of --target (z = L).
    Strong: flux through planes = 1, E_z > 0 inside, E = 0 outside, zero divergence.
    Coulomb: Gauss's law and zero divergence; reversal and leakage are measured.
    Exit status: 0 all claimed properties hold, 1 one fails, 2 bad input.
    """
    start = time.perf_counter()
    try:
        field = build_field(kind, L, sigma0, d)
        A, B, probe_seed = draw_data(source, target, n, dim, seed)
        rows, used = measure(field, A, B, plan, backend, probe_seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    report = {
        "field": field.params(),
        "config": {"source": source, "target": target, "dim": A.shape[1], "n": n, "plan": plan, "seed": seed,
                   "backend": used},
        "checks": rows,
        "passed": all(r["status"] != "fail" for r in rows),
        "seconds": time.perf_counter() - start,
    }
    click.echo(json.dumps(report, indent=2) if as_json else table(report))
    click.get_current_context().exit(0 if report["passed"] else 1)


TRACE_STATS = ("arrived", "reversed", "leaked", "lost", "straightness", "flux_error", "w2")


def trace_table(rows):
    """Aligned table of trace statistics, one row per (field, L)."""
    head = ("field", "L") + TRACE_STATS + ("seconds",)
    cells = [head] + [tuple(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in head) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].rjust(widths[i]) for i in range(len(head))) for c in cells)


@physfield.command()
@field_options
@click.option("--lines", type=click.IntRange(min=1), default=512, show_default=True, help="field lines to trace.")
@click.option("--steps", type=click.IntRange(min=2), default=200, show_default=True,
              help="RK4 steps in z (strong field).")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write a PNG of the lines in the (z, x1) plane (and in 3-D for D = 2).")
@click.option("--sweep-L", "sweep", default=None,
              help="comma-separated plate distances: trace BOTH fields on the same data at each L.")
def trace(kind, source, target, dim, n, plan, L, sigma0, d, seed, backend, as_json, lines, steps, plot, sweep):
    """Trace field lines and report how they end (SPEC section 4).

    Lines start flux-weighted just above P. Reported: the fractions that arrive at Q, reverse
    (E_z < 0 or back through z = 0), leak (past z = L) or are lost; straightness (length /
    end-to-end distance); the flux error over planes; W2 between endpoints and Q.
    """
    import physfield as pf

    try:
        Ls = [L] if sweep is None else [float(v) for v in sweep.split(",") if v.strip()]
        if not Ls:
            raise ValueError("--sweep-L needs at least one plate distance")
        A, B, line_seed = draw_data(source, target, n, dim, seed)
        kinds = [kind] if sweep is None else ["strong", "coulomb"]
        rows, results = [], []
        for L_ in Ls:
            for k in kinds:
                field = build_field(k, L_, sigma0 if k == "strong" else None, d if k == "strong" else None)
                res = pf.trace(field, A, B, plan=plan, n_lines=lines, seed=line_seed, n_steps=steps,
                               keep_paths=plot is not None, backend=backend, progress=not as_json)
                rows.append({"field": k, "L": L_, **res.stats})
                results.append((field, res))
        if plot is not None:
            from physfield import plot as plotting

            field, res = results[0]
            plotting.lines_png(res, A, B, field.L, plot, title=f"{field!r}, {source} -> {target}, plan {plan}")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"source": source, "target": target, "D": int(A.shape[1]), "n": n, "plan": plan,
                               "seed": seed, "runs": rows}, indent=2))
    else:
        click.echo(f"physfield trace: {source} -> {target}, D={A.shape[1]}, n={n} per side, plan={plan}, "
                   f"{lines} lines, seed={seed}\n")
        click.echo(trace_table(rows))
        if plot is not None:
            click.echo(f"\nlines drawn to {plot}")


@physfield.command()
@click.option("--field", "kind", type=click.Choice(["strong", "coulomb"]), required=True)
@click.option("--source", default="gaussian", show_default=True, help="data spec of the sources on z = 0.")
@click.option("--target", default="8gaussians", show_default=True, help="data spec of the sinks on z = L.")
@click.option("--dim", type=click.IntRange(min=1), default=None, help="dimension of gaussian specs.")
@click.option("--n", type=click.IntRange(min=1), required=True, help="training points to store.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True, help="pairs per minibatch B.")
@click.option("--plan", type=click.Choice(["paired", "independent", "optimal", "sinkhorn"]), default="paired",
              show_default=True, help="minibatch coupling; optimal = IFM-MB.")
@click.option("--reg", type=float, default=0.05, show_default=True, help="sinkhorn regularisation (relative).")
@click.option("--lambda", "lam", type=float, default=0.5, show_default=True, help="noise of the training points.")
@click.option("--L", "L", type=float, default=6.0, show_default=True, help="plate distance.")
@click.option("--sigma0", type=float, default=None, help="string width (strong) [default: 1.0].")
@click.option("--d", type=float, default=None, help="end length (strong) [default: 0.5].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "numpy", "numba", "cupy"]), default="auto", show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="cache file [default: data/<field>_<source>_<target>.h5].")
@click.option("--resume", is_flag=True, help="extend an existing cache with the same attributes to --n points.")
@click.option("--overwrite", is_flag=True, help="replace an existing cache.")
@click.option("--store-pairs", is_flag=True, help="keep every minibatch (verification mode).")
def targets(kind, source, target, dim, n, batch, plan, reg, lam, L, sigma0, d, seed, backend, out, resume,
            overwrite, store_pairs):
    """Cache Monte Carlo training targets (points, unit field directions, log|E|, ESS) to HDF5."""
    import re

    from physfield import targets as tg

    if out is None:
        slug = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", v) for v in (kind, source, target))
        out = f"data/{slug}.h5"
    try:
        field = build_field(kind, L, sigma0, d)
        result = tg.generate(field, source, target, n, out, batch=batch, plan=plan, lam=lam, seed=seed, reg=reg,
                             dim=dim, backend=backend, resume=resume, overwrite=overwrite,
                             store_pairs=store_pairs, progress=True)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(str(result))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def learn():
    """The learner (torch); its commands come with the learner."""
