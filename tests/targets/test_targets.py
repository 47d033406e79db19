"""Monte Carlo targets cached to HDF5: schema, physics of the stored targets
(recomputed independently from the stored pairs), byte-identical resume, crash safety, refusal
of foreign and damaged files, one-line errors for bad arguments."""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp

import physfield as pf
from physfield import targets
from physfield.targets import generate, open_cache

STRONG = pf.StrongField(L=6.0, sigma0=1.0, d=0.5)
COULOMB = pf.CoulombField(L=6.0)
DATASETS = ("points", "targets", "log_norm", "ess")


def dataset_bytes(path):
    """Every dataset of the file, as raw bytes, by name."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.update({name: obj[()].tobytes()})
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# schema -----------------------------------------------------------------------------------------


def test_schema_and_attributes(tmp_path):
    out = tmp_path / "cache.h5"
    res = generate(STRONG, "digits:2", "digits:3", 70, out, batch=32, plan="optimal", lam=0.3, seed=5)
    assert (res.n, res.new) == (70, 70) and res.points_per_second > 0
    assert set(res.timings) == {"data", "plan", "field", "write"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5"]  # no temporary file left
    with open_cache(out, verify=True) as c:
        assert len(c) == 70 and c.D == 64 and c.pairs is None
        assert c.attrs == {
            "format": "physfield-targets", "schema_version": 1,
            "field": json.dumps(STRONG.params(), sort_keys=True), "L": 6.0, "D": 64,
            "plan": "optimal", "B": 32, "lambda": 0.3, "eps": 6e-3, "outside_fraction": 0.0,
            "seed": 5, "source": "digits:2", "target": "digits:3", "data_shape": (1, 8, 8),
            "store_pairs": False, "backend": "numba", "version": pf.__version__,
        }
        assert c.field_params == {"kind": "strong", "L": 6.0, "sigma0": 1.0, "d": 0.5}
        run = c.run  # the typed record of the attributes
        assert (run.source, run.target, run.dim, run.B, run.plan, run.eps, run.shape) == \
            ("digits:2", "digits:3", 64, 32, "optimal", 6e-3, (1, 8, 8))
        assert run.field.params() == STRONG.params() and run.lam == 0.3 and run.reg is None
        assert targets.schema.run_attrs(run) == c.attrs  # read back, it writes the same attributes
        for name, shape, dtype in (("points", (70, 65), np.float32), ("targets", (70, 65), np.float32),
                                   ("log_norm", (70,), np.float64), ("ess", (70,), np.float64)):
            ds = getattr(c, name)
            assert isinstance(ds, h5py.Dataset)  # lazy
            assert ds.shape == shape and ds.dtype == dtype
            assert ds.chunks is not None and ds.compression is not None and ds.fletcher32
        assert 1 <= c.ess[:].min() and c.ess[:].max() <= 32
    with h5py.File(out, "r") as f:
        assert f.attrs["data_shape"].tolist() == [1, 8, 8]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_and_summary_line(tmp_path, monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    res = generate(STRONG, "gaussian", "moons", 40, tmp_path / "p.h5", batch=16, progress=True)
    assert "targets" in err.getvalue()  # the tqdm bar, shown on a terminal
    line = str(res)
    assert "\n" not in line and line.startswith("40 points in ") and " points/s (data " in line
    assert line.endswith(f"{tmp_path / 'p.h5'} holds 40")


def test_sinkhorn_stores_its_regularisation_and_vectors_have_no_shape(tmp_path):
    generate(STRONG, "gaussian", "moons", 10, tmp_path / "s.h5", batch=8, plan="sinkhorn", reg=0.2)
    with open_cache(tmp_path / "s.h5") as c:
        assert c.attrs["reg"] == 0.2 and "data_shape" not in c.attrs and c.D == 2


# physics of the stored targets ------------------------------------------------------------------


def recompute(c, k, field):
    """Targets of batch ``k`` recomputed from its stored pairs with the NumPy reference."""
    B, n = c.attrs["B"], len(c)
    rows = slice(k * B, min(n, (k + 1) * B))
    P = c.points[rows].astype(np.float64)
    A, Q, pi = c.pairs["sources"][k], c.pairs["sinks"][k], c.pairs["plan"][k]
    return rows, P, A, Q, pi, field.direction(P, A, Q, plan=pi, backend="numpy")


@given(B=st.integers(1, 12), batches=st.integers(1, 3), last=st.integers(1, 12),
       plan=st.sampled_from(pf.plans.names()), lam=st.sampled_from([0.0, 0.4, 2.0]), D=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), z_schedule=st.sampled_from(list(targets.Z_SCHEDULES)))
def test_strong_targets_equal_recomputation_from_stored_pairs(B, batches, last, plan, lam, D, seed, z_schedule):
    n = (batches - 1) * B + min(last, B)  # the last batch full or truncated
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.h5"
        generate(STRONG, f"gaussian:{D}", f"gaussian:{D}", n, out, batch=B, plan=plan, lam=lam, seed=seed,
                 store_pairs=True, z_schedule=z_schedule)
        with open_cache(out, verify=True) as c:
            U, log_norm, ess = c.targets[:], c.log_norm[:], c.ess[:]
            partner = c.pairs["partner"][:]
            assert np.all(U[:, 0] > 0)  # no reversal: E_z > 0 between the plates
            for k in range(c.pairs["plan"].shape[0]):
                rows, P, A, Q, pi, (u, ln) = recompute(c, k, STRONG)
                assert np.allclose(pi.sum(), 1) and np.all(pi >= 0)
                if plan in ("paired", "optimal"):  # a permutation / B
                    assert np.allclose(np.sort(pi.ravel())[-B:], 1 / B) and np.allclose(pi.sum(axis=0), 1 / B)
                i = np.arange(rows.stop - rows.start)
                j = partner[rows]
                assert np.all(pi[i, j] > 0)  # each point comes from a pair of the plan
                z = P[:, 0]
                assert np.all((z >= 6e-3 * (1 - 1e-6)) & (z <= 6 - 6e-3 * (1 - 1e-6)))
                if lam == 0:  # on the straight segment from a_i to b_j
                    t = (z / 6.0)[:, None]
                    assert np.allclose(P[:, 1:], (1 - t) * A[i] + t * Q[j], atol=1e-5)
                assert np.max(np.abs(U[rows] - u)) < 1e-6
                assert np.allclose(log_norm[rows], ln, rtol=1e-10, atol=1e-8)
                _, _, e = STRONG.direction(P, A, Q, plan=pi, backend="numpy", return_ess=True)
                assert np.allclose(ess[rows], e, rtol=1e-9)
                assert np.all((ess[rows] >= 1 - 1e-9) & (ess[rows] <= np.count_nonzero(pi) + 1e-9))


def test_z_schedules_draw_their_laws(tmp_path):
    """``uniform``: ``t = z/L ~ U(0, 1)``; ``logit-normal``: ``log(t / (1 - t)) ~ N(0, 1)``. Each
    cache passes its own law's Kolmogorov-Smirnov test and fails the other's (4096 points), and
    records a schedule other than the default in ``z_schedule``."""
    from scipy import stats

    t = {}
    for schedule in targets.Z_SCHEDULES:
        out = tmp_path / f"{schedule}.h5"
        generate(STRONG, "gaussian:1", "gaussian:1", 4096, out, batch=256, plan="paired", seed=3, z_schedule=schedule)
        with open_cache(out, verify=True) as c:
            t[schedule] = c.points[:, 0].astype(np.float64) / 6.0
            assert c.attrs.get("z_schedule") == (None if schedule == targets.Z_SCHEDULE else schedule)
    logit = {k: np.log(v / (1 - v)) for k, v in t.items()}
    assert stats.kstest(t["uniform"], "uniform").pvalue > 1e-3
    assert stats.kstest(logit["logit-normal"], "norm").pvalue > 1e-3
    assert stats.kstest(t["logit-normal"], "uniform").pvalue < 1e-6
    assert stats.kstest(logit["uniform"], "norm").pvalue < 1e-6


@pytest.mark.parametrize("plan", ["paired", "optimal"])
def test_coulomb_targets_equal_recomputation_and_reach_outside(tmp_path, plan):
    B, L, eps = 16, 6.0, 6e-3
    out = tmp_path / "c.h5"
    generate(COULOMB, "gaussian:3", "gaussian:3", 160, out, batch=B, plan=plan, lam=0.0, seed=1,
             outside_fraction=0.3, store_pairs=True)
    with open_cache(out, verify=True) as c:
        assert c.attrs["outside_fraction"] == 0.3
        ess, partner = c.ess[:], c.pairs["partner"][:]
        z_all = c.points[:, 0]
        behind, beyond = z_all < 0, z_all > L
        assert behind.mean() > 0.05 and beyond.mean() > 0.05 and (behind | beyond).mean() < 0.5
        for k in range(10):
            rows, P, A, Q, pi, (u, ln) = recompute(c, k, COULOMB)
            assert np.max(np.abs(c.targets[rows] - u)) < 1e-6
            assert np.allclose(c.log_norm[rows], ln, rtol=1e-10)
            z, x = P[:, 0], P[:, 1:]
            j = partner[rows]
            # lam = 0: behind P on the normal through a_i, beyond Q through b_j, in between on the segment
            anchor = np.where((z < 0)[:, None], A, np.where((z > L)[:, None], Q[j], np.nan))
            depth = np.where(z < 0, -z, z - L)
            out_ = (z < 0) | (z > L)
            assert np.allclose(x[out_], anchor[out_], atol=1e-5)
            assert np.all((depth[out_] >= eps * (1 - 1e-6)) & (depth[out_] <= L * (1 + 1e-6)))
            # ESS of the charges' contributions |q G| = q / (|S^D| r^D), from explicit differences
            charges = np.concatenate([np.column_stack([np.zeros(B), A]), np.column_stack([np.full(B, L), Q])])
            r = np.linalg.norm(P[:, None, :] - charges[None], axis=-1)
            logits = np.log(np.concatenate([pi.sum(axis=1), pi.sum(axis=0)])) - 3 * np.log(r)
            w = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
            assert np.allclose(ess[rows], 1 / (w**2).sum(axis=1), rtol=1e-8)
            assert np.all((ess[rows] >= 1 - 1e-9) & (ess[rows] <= 2 * B + 1e-9))


# reproducibility --------------------------------------------------------------------------------


@pytest.mark.parametrize("field,plan,store_pairs", [(STRONG, "optimal", True), (COULOMB, "sinkhorn", False)])
def test_resume_equals_one_shot_byte_for_byte(tmp_path, field, plan, store_pairs):
    kw = {"batch": 32, "plan": plan, "seed": 11, "store_pairs": store_pairs}
    generate(field, "gaussian:3", "gaussian:3", 100, tmp_path / "one.h5", **kw)
    parts = tmp_path / "parts.h5"
    for n in (37, 64, 100):  # stops inside a batch and on a batch boundary
        res = generate(field, "gaussian:3", "gaussian:3", n, parts, resume=True, **kw)
    assert (res.n, res.new) == (100, 36)
    one, split = dataset_bytes(tmp_path / "one.h5"), dataset_bytes(parts)
    assert set(one) == set(split) and all(one[k] == split[k] for k in one)
    assert len(one) == (8 if store_pairs else 4)
    points = np.frombuffer(one["points"], np.float32).reshape(100, 4)
    assert len({points[k:k + 32].tobytes() for k in range(0, 96, 32)}) == 3  # batches differ
    # a different seed gives different data
    generate(field, "gaussian:3", "gaussian:3", 100, tmp_path / "other.h5", **{**kw, "seed": 12})
    assert dataset_bytes(tmp_path / "other.h5")["points"] != one["points"]


def test_resume_to_the_same_size_is_a_no_op_and_shrinking_is_refused(tmp_path):
    out = tmp_path / "c.h5"
    generate(STRONG, "gaussian", "moons", 20, out, batch=8)
    before = out.read_bytes()
    res = generate(STRONG, "gaussian", "moons", 20, out, batch=8, resume=True)
    assert res.new == 0 and str(res) == f"{out} already holds 20 points: nothing to do"
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 10, out, batch=8, resume=True), "already holds 20")
    assert out.read_bytes() == before


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import physfield as pf
    from physfield.targets import generate
    generate(pf.StrongField(L=6.0, sigma0=1.0, d=0.5), "gaussian:3", "gaussian:3", 10**7, sys.argv[1],
             batch=32, seed=3, resume=True)
""")


def run_and_kill(out):
    """Start a huge ``generate(..., resume=True)`` into ``out`` in a subprocess and SIGKILL it once
    its temporary file exists and is growing; returns the leftover temporary files."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)])
    try:
        deadline = time.monotonic() + 60
        start = out.stat().st_size if out.exists() else 0
        while time.monotonic() < deadline and proc.poll() is None:
            tmps = list(out.parent.glob(f".{out.name}.*.tmp"))
            if tmps and tmps[0].exists() and tmps[0].stat().st_size > start + 4096:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the generating process ended before it was killed"
        assert tmps, "no temporary file appeared"
        time.sleep(1.5)  # past a flush (FLUSH_SECONDS): some points are committed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return list(out.parent.glob(f".{out.name}.*.tmp"))


@pytest.mark.slow
def test_sigkill_leaves_no_cache_or_the_previous_one_and_resume_completes(tmp_path):
    """kill -9 of a run in one process: the cache is absent or the previous one, and --resume
    continues from the points the killed run committed (a flush every FLUSH_SECONDS)."""
    kw = {"batch": 32, "seed": 3}
    fresh = tmp_path / "fresh.h5"
    assert run_and_kill(fresh)  # stale temporary file, never the cache itself
    assert not fresh.exists()
    res = generate(STRONG, "gaussian:3", "gaussian:3", 120, fresh, resume=True, **kw)
    assert res.new < 120  # the killed run's committed points are resumed, not recomputed
    generate(STRONG, "gaussian:3", "gaussian:3", 120, tmp_path / "once.h5", **kw)
    assert dataset_bytes(fresh) == dataset_bytes(tmp_path / "once.h5")
    assert not list(tmp_path.glob(".fresh.h5.*.tmp"))  # the stale temporary file was used up

    out = tmp_path / "cache.h5"
    generate(STRONG, "gaussian:3", "gaussian:3", 50, out, **kw)
    before = out.read_bytes()
    assert run_and_kill(out)
    assert out.read_bytes() == before  # the previous complete cache, untouched
    with open_cache(out, verify=True) as c:
        assert len(c) == 50

    generate(STRONG, "gaussian:3", "gaussian:3", 120, out, resume=True, **kw)
    generate(STRONG, "gaussian:3", "gaussian:3", 120, tmp_path / "one.h5", **kw)
    assert dataset_bytes(out) == dataset_bytes(tmp_path / "one.h5")


def test_finished_cache_is_published_by_an_atomic_rename(tmp_path):
    """A resume writes a new file and renames it over the old one: the path then names a new
    inode, while a reader that had the old cache open keeps reading the old, complete contents
    (a copy into the old file would rewrite the very bytes that reader is using)."""
    out = tmp_path / "cache.h5"
    kw = {"batch": 16, "seed": 4}
    generate(STRONG, "gaussian", "moons", 40, out, **kw)
    with h5py.File(out, "r") as old:
        before = {name: old[name][()] for name in DATASETS}
        assert all(len(v) == 40 for v in before.values())
        inode = os.stat(out).st_ino

        res = generate(STRONG, "gaussian", "moons", 100, out, resume=True, **kw)
        assert (res.n, res.new) == (100, 60)

        assert os.stat(out).st_ino != inode, "the cache was rewritten in place, not renamed into place"
        for name in DATASETS:  # the old handle still reads the old complete cache, afresh
            old[name].id.refresh()
            again = old[name][()]
            assert again.shape == before[name].shape
            assert again.tobytes() == before[name].tobytes()
    with h5py.File(out, "r") as new:
        for name in DATASETS:
            assert len(new[name]) == 100
            assert new[name][:40].tobytes() == before[name].tobytes()  # extended, not redrawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5"]  # no temporary file left
    with open_cache(out, verify=True) as c:
        assert len(c) == 100


# refusals ---------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path):
    out = tmp_path / "good.h5"
    generate(STRONG, "gaussian", "moons", 600, out, batch=64, seed=2)
    return out


def test_missing_foreign_and_non_hdf5_files_are_refused(tmp_path):
    one_line_error(lambda: open_cache(tmp_path / "none.h5"), "not found")
    text = tmp_path / "text.h5"
    text.write_text("hello\n")
    one_line_error(lambda: open_cache(text), "not an HDF5 file")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["points"] = np.zeros((3, 3), np.float32)
    one_line_error(lambda: open_cache(foreign), "not a physfield targets cache")
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 10, foreign, resume=True),
                   "not a physfield targets cache")


def test_truncated_file_is_refused(cache, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    one_line_error(lambda: open_cache(cut), "truncated or corrupt")


def test_damaged_chunk_is_caught_by_checksum(cache):
    with h5py.File(cache, "r") as f:
        info = f["targets"].id.get_chunk_info(0)
    raw = bytearray(cache.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0xFF
    cache.write_bytes(bytes(raw))
    open_cache(cache).close()  # the schema is intact: a lazy open succeeds
    one_line_error(lambda: open_cache(cache, verify=True), "unreadable")
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 700, cache, batch=64, seed=2, resume=True),
                   "unreadable")


@pytest.mark.parametrize("damage,match", [
    (lambda f: f.attrs.__setitem__("schema_version", 99), "unknown schema_version 99"),
    (lambda f: f.attrs.__delitem__("seed"), "missing attribute 'seed'"),
    (lambda f: f.__delitem__("ess"), "missing dataset 'ess'"),
    (lambda f: f["log_norm"].resize((10,)), "log_norm.*shape"),
    (lambda f: f.attrs.__setitem__("D", 5), "points.*shape"),
])
def test_schema_violations_are_refused(cache, damage, match):
    with h5py.File(cache, "r+") as f:
        damage(f)
    one_line_error(lambda: open_cache(cache), match)


def test_bad_values_are_refused_by_verify(cache):
    with h5py.File(cache, "r+") as f:
        f["targets"][7] = 2 * f["targets"][7]
    open_cache(cache).close()
    one_line_error(lambda: open_cache(cache, verify=True), "targets at row 7")


@pytest.mark.parametrize("change,name", [({"lam": 0.7}, "lambda"), ({"seed": 3}, "seed"),
                                         ({"plan": "paired"}, "plan"), ({"batch": 32}, "B"),
                                         ({"target": "circles"}, "target"),
                                         ({"z_schedule": "logit-normal"}, "z_schedule")])
def test_resume_refuses_a_mismatch_naming_it(cache, change, name):
    before = cache.read_bytes()
    kw = {"batch": 64, "seed": 2, "target": "moons", **change}
    one_line_error(lambda: generate(STRONG, "gaussian", kw.pop("target"), 700, cache, resume=True, **kw),
                   f"attribute {name} is")
    other = pf.StrongField(L=6.0, sigma0=2.0, d=0.5)
    one_line_error(lambda: generate(other, "gaussian", "moons", 700, cache, batch=64, seed=2, resume=True),
                   "attribute field is")
    assert cache.read_bytes() == before


def test_existing_output_needs_resume_or_overwrite(cache):
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 10, cache), "exists")
    generate(STRONG, "gaussian", "moons", 10, cache, batch=4, overwrite=True)
    with open_cache(cache) as c:
        assert len(c) == 10


@pytest.mark.parametrize("field,kw,match", [
    ("strong", {}, "field must be"),
    (STRONG, {"n": 0}, "n must be a positive integer"),
    (STRONG, {"n": 2.5}, "n must be a positive integer"),
    (STRONG, {"batch": 0}, "batch must be"),
    (STRONG, {"plan": "greedy"}, "unknown plan .greedy."),
    (STRONG, {"z_schedule": "cosine"}, "z_schedule must be one of"),
    (STRONG, {"lam": -1}, "lambda must be >= 0"),
    (STRONG, {"lam": float("nan")}, "lambda must be finite"),
    (STRONG, {"lam": "x"}, "lambda must be a number"),
    (STRONG, {"eps": 0.0}, "eps must lie"),
    (STRONG, {"eps": 3.0}, "eps must lie"),
    (STRONG, {"outside_fraction": 0.1}, "must be 0 for StrongField.*vanishes outside the plates"),
    (COULOMB, {"outside_fraction": 1.0}, "outside_fraction must lie"),
    (STRONG, {"reg": 0}, "reg must be > 0"),
    (STRONG, {"seed": -1}, "seed must be"),
    (STRONG, {"seed": True}, "seed must be"),
    (STRONG, {"source": "nope"}, "unknown data source"),
    (STRONG, {"source": "moons", "target": "gaussian:3"}, "'moons' is 2-dimensional but target"),
    (STRONG, {"source": "digits", "dim": 3}, "64-dimensional"),
    (STRONG, {"backend": "cuda"}, "unknown backend"),
    (STRONG, {"out": "no/such/folder/c.h5"}, "does not exist"),
    (STRONG, {"out": "."}, "is a directory"),
])
def test_bad_arguments_are_one_line_errors_and_write_nothing(tmp_path, monkeypatch, field, kw, match):
    monkeypatch.chdir(tmp_path)
    args = {"source": "gaussian", "target": "moons", "n": 10, "out": "c.h5", **kw}
    one_line_error(lambda: generate(field, args.pop("source"), args.pop("target"), args.pop("n"),
                                    args.pop("out"), **args), match)
    assert list(tmp_path.iterdir()) == []


def test_gaussian_source_takes_the_targets_dimension(tmp_path):
    """``--source gaussian --target digits`` without ``--dim`` is a 64-D run (not an error)."""
    generate(STRONG, "gaussian", "digits:2", 8, tmp_path / "c.h5", batch=8)
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.D == 64 and cache.attrs["data_shape"] == (1, 8, 8)


@pytest.mark.slow
def test_ctrl_c_keeps_the_committed_points_says_so_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT) of ``physfield targets`` in one process: one line naming what is kept, exit
    status 130, a cache of the points done, and --resume computes only the rest."""
    out = tmp_path / "c.h5"
    args = [sys.executable, "-m", "physfield", "targets", "--field", "strong", "--source", "gaussian:3", "--target",
            "gaussian:3", "--batch", "32", "--seed", "3", "-o", str(out)]
    proc = subprocess.Popen([*args, "--n", str(10**7)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until points are being written
        tmps = list(tmp_path.glob(".c.h5.*.tmp"))
        if tmps and tmps[0].stat().st_size > 64 * 1024:
            break
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, stderr
    (line,) = [s for s in stderr.splitlines() if s.startswith("Interrupted")]
    kept = int(line.split(" keeps ")[1].split()[0])
    assert line == f"Interrupted: {out} keeps {kept} of {10**7} points; --resume continues"
    assert "Traceback" not in stderr and not list(tmp_path.glob(".c.h5.*.tmp"))
    with open_cache(out, verify=True) as cache:
        assert len(cache) == kept > 0
    done = subprocess.run([*args, "--n", str(kept + 40), "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("40 points"), done.stdout + done.stderr
    generate(pf.StrongField(6.0), "gaussian:3", "gaussian:3", kept + 40, tmp_path / "once.h5", batch=32, seed=3)
    assert dataset_bytes(out) == dataset_bytes(tmp_path / "once.h5")
