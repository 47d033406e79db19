"""Targets computed in shards (local processes, Ray) and joined by an HDF5 virtual dataset.

- The joined cache, read with plain h5py, is the single-process cache's bytes, dataset by
  dataset (any shard size, a last batch cut short, the ``pairs`` group); so is ``copy``.
- The virtual datasets name their shards by relative paths: the cache reads from any working
  folder and moves with its shard folder; a missing shard is refused by ``open_cache``.
- ``resume`` recomputes only missing or incomplete shards; a failing or killed task is retried;
  a killed run leaves no corrupt shard, and ``resume`` completes it.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from physfield.targets import engines, generate, open_cache, shards
from tests.targets.test_targets import COULOMB, STRONG, dataset_bytes, one_line_error

KW = {"batch": 32, "seed": 5}
ARGS = ["--field", "strong", "--d", str(STRONG.d), "--source", "gaussian:3", "--target", "gaussian:3",
        "--batch", "32", "--seed", "5"]


def cli_run(*args):
    """``python -m physfield targets ARGS args`` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "physfield", "targets", *ARGS, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def cached_kernels(tmp_path_factory):
    """Numba's cache holds the kernels these runs use. Kernels compiled in a process can differ in
    the last bit from the cached build (fast-math sums, see ``physfield.kernels.simd``), so what
    other processes compute is compared with a single-process run in another process, after
    this run has filled the cache; in-process runs are compared in process."""
    out = tmp_path_factory.mktemp("warm") / "c.h5"
    cli_run("--n", "64", "--plan", "optimal", "--store-pairs", "-o", str(out))
    cli_run("--n", "64", "-o", str(out), "--overwrite")


def assert_same_datasets(path, reference):
    got, want = dataset_bytes(path), dataset_bytes(reference)
    assert set(got) == set(want) and all(got[k] == want[k] for k in want), \
        [k for k in want if got.get(k) != want[k]]


@pytest.mark.parametrize("field,plan,store_pairs,shard_points", [
    (STRONG, "optimal", True, 70), (COULOMB, "sinkhorn", False, 32), (STRONG, "paired", False, 10**6)])
def test_sharded_cache_equals_the_single_process_cache(tmp_path, monkeypatch, field, plan, store_pairs, shard_points):
    kw = {**KW, "plan": plan, "store_pairs": store_pairs}
    n = 250  # 8 batches of 32, the last cut to 26 points
    generate(field, "gaussian:3", "gaussian:3", n, tmp_path / "one.h5", **kw)
    result = generate(field, "gaussian:3", "gaussian:3", n, tmp_path / "vds.h5", engine=engines.Local(),
                      shard_points=shard_points, **kw)
    assert (result.n, result.new) == (n, n)
    assert_same_datasets(tmp_path / "vds.h5", tmp_path / "one.h5")
    per = -(-shard_points // 32) * 32
    files = sorted(p.name for p in (tmp_path / "vds.h5.shards").iterdir())
    assert files == [f"shard-{s:06d}.h5" for s in range(-(-n // per))]
    with h5py.File(tmp_path / "vds.h5", "r") as f:
        assert all(f[name].is_virtual for name in ("points", "targets", "log_norm", "ess"))
        assert dict(f.attrs) == dict(h5py.File(tmp_path / "one.h5", "r").attrs)
    monkeypatch.setattr(shards, "COPY_ROWS", 7)  # shards copied in pieces, a piece cut short at their ends
    generate(field, "gaussian:3", "gaussian:3", n, tmp_path / "copy.h5", engine=engines.Local(),
             shard_points=shard_points, copy=True, **kw)
    assert_same_datasets(tmp_path / "copy.h5", tmp_path / "one.h5")
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert not f["points"].is_virtual
    with open_cache(tmp_path / "vds.h5", verify=True) as cache:
        assert len(cache) == n


@pytest.mark.slow
def test_process_pool_equals_the_single_process_cache(tmp_path, cached_kernels):
    cli_run("--n", "300", "-o", str(tmp_path / "one.h5"))
    engine = engines.Pool(2)
    try:
        generate(STRONG, "gaussian:3", "gaussian:3", 300, tmp_path / "pool.h5", engine=engine, shard_points=64, **KW)
    finally:
        engine.close()
    assert_same_datasets(tmp_path / "pool.h5", tmp_path / "one.h5")


def test_cache_reads_from_any_folder_and_moves_with_its_shards(tmp_path, monkeypatch):
    generate(STRONG, "gaussian", "moons", 100, tmp_path / "c.h5", engine=engines.Local(), shard_points=32, **KW)
    want = dataset_bytes(tmp_path / "c.h5")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert dataset_bytes(tmp_path / "c.h5") == want
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "c.h5", moved / "c.h5")
    shutil.move(tmp_path / "c.h5.shards", moved / "c.h5.shards")
    assert dataset_bytes(moved / "c.h5") == want
    with open_cache(moved / "c.h5", verify=True) as cache:
        assert len(cache) == 100
    (moved / "c.h5.shards" / "shard-000002.h5").unlink()
    with h5py.File(moved / "c.h5", "r") as f:  # what the check prevents: HDF5 fills a missing source
        assert not f["targets"][64:96].any()
    one_line_error(lambda: open_cache(moved / "c.h5"), "reads shard c.h5.shards/shard-000002.h5, which is missing")


def test_resume_recomputes_only_missing_or_incomplete_shards(tmp_path):
    out = tmp_path / "c.h5"
    generate(STRONG, "gaussian:3", "gaussian:3", 150, out, engine=engines.Local(), shard_points=32, **KW)
    folder = tmp_path / "c.h5.shards"
    stamp = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    (folder / "shard-000001.h5").unlink()  # missing
    (folder / "shard-000003.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # damaged
    (folder / ".shard-000004.h5.x1.tmp").write_bytes(b"half")  # a killed worker's leftover
    out.unlink()
    result = generate(STRONG, "gaussian:3", "gaussian:3", 150, out, engine=engines.Local(), shard_points=32,
                      resume=True, **KW)
    assert result.new == 64
    now = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert sorted(now) == [f"shard-{s:06d}.h5" for s in range(5)]
    assert [name for name in sorted(now) if now[name] == stamp[name]] == ["shard-000000.h5", "shard-000002.h5",
                                                                          "shard-000004.h5"]
    generate(STRONG, "gaussian:3", "gaussian:3", 150, tmp_path / "one.h5", **KW)
    assert_same_datasets(out, tmp_path / "one.h5")
    # extending the run: only the last, shorter shard and the new ones are computed
    result = generate(STRONG, "gaussian:3", "gaussian:3", 200, out, engine=engines.Local(), shard_points=32,
                      resume=True, **KW)
    assert result.new == 200 - 128
    generate(STRONG, "gaussian:3", "gaussian:3", 200, tmp_path / "one200.h5", **KW)
    assert_same_datasets(out, tmp_path / "one200.h5")


def test_ctrl_c_keeps_the_complete_shards_says_how_many_and_resume_computes_the_rest(tmp_path, monkeypatch):
    """Ctrl-C during shard 2 of 5: one line naming the shards and points kept (what
    ``physfield targets`` prints after ``Interrupted:``), those shards on disk, no cache and no
    temporary file, and --resume computes the other shards only."""
    out, write = tmp_path / "c.h5", shards.write

    def interrupted_at_shard_2(run, shard):
        if shard.index == 2:
            raise KeyboardInterrupt
        return write(run, shard)

    monkeypatch.setattr(shards, "write", interrupted_at_shard_2)
    with pytest.raises(KeyboardInterrupt) as info:
        generate(STRONG, "gaussian:3", "gaussian:3", 150, out, engine=engines.Local(), shard_points=32, **KW)
    folder = tmp_path / "c.h5.shards"
    assert str(info.value) == f"{folder} keeps 2 of 5 shards (64 of 150 points); --resume continues"
    assert sorted(p.name for p in folder.iterdir()) == ["shard-000000.h5", "shard-000001.h5"]
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(shards, "write", write)
    result = generate(STRONG, "gaussian:3", "gaussian:3", 150, out, engine=engines.Local(), shard_points=32,
                      resume=True, **KW)
    assert result.new == 150 - 64
    generate(STRONG, "gaussian:3", "gaussian:3", 150, tmp_path / "one.h5", **KW)
    assert_same_datasets(out, tmp_path / "one.h5")


def test_resume_refuses_a_cache_of_another_run_and_existing_output_needs_a_flag(tmp_path):
    out = tmp_path / "c.h5"
    generate(STRONG, "gaussian", "moons", 64, out, engine=engines.Local(), shard_points=32, **KW)
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 64, out, engine=engines.Local(), **KW),
                   "exists; --resume")
    one_line_error(lambda: generate(STRONG, "gaussian", "moons", 64, out, engine=engines.Local(), resume=True,
                                    **{**KW, "seed": 6}), "attribute seed is 5 in the cache but 6")


def flaky(task):
    """A task that fails on its first attempt: ``raise`` raises, ``die`` kills its process."""
    name, how, folder = task
    marker = os.path.join(folder, name)
    if how != "ok" and not os.path.exists(marker):
        open(marker, "w").close()
        if how == "raise":
            raise RuntimeError(f"{name} broke")
        os._exit(1)
    return name.upper()


@pytest.mark.parametrize("engine_type", ["local", pytest.param("pool", marks=pytest.mark.slow)])
def test_failed_and_killed_tasks_are_retried(tmp_path, engine_type):
    """Each task fails once. In a pool a dying worker also takes down the task running beside
    it (charged an attempt too), so two retries are what every task may need there."""
    hows = ["ok", "raise", "ok"] if engine_type == "local" else ["ok", "raise", "die", "ok"]
    tasks = [(f"t{i}", how, str(tmp_path)) for i, how in enumerate(hows)]
    engine = engines.Local() if engine_type == "local" else engines.Pool(2)
    retries = 1 if engine_type == "local" else 2
    try:
        done = {}
        engines.run_all(engine, flaky, tasks, retries, on_done=lambda task, result: done.update({task: result}))
        assert done == {task: task[0].upper() for task in tasks}
        for marker in tmp_path.iterdir():
            marker.unlink()
        why = "t1 broke" if engine_type == "local" else ""
        with pytest.raises(engines.TaskFailed, match=f"failed 1 times; last error: {why}") as info:
            engines.run_all(engine, flaky, tasks, retries=0)
        assert "\n" not in str(info.value)
    finally:
        engine.close()


def children(pid):
    """The live (not zombie) processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and not fields.get("State", "").startswith("Z"):
            found.append(int(status.parent.name))
    return found


def alive(pids):
    """Those of ``pids`` that still run (a zombie has ended)."""
    def running(pid):
        try:
            return not Path(f"/proc/{pid}/status").read_text().split("State:\t")[1].startswith("Z")
        except (OSError, IndexError):
            return False

    return [pid for pid in pids if running(pid)]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_killed_run_leaves_complete_shards_only_and_resume_completes_it(tmp_path, cached_kernels):
    """kill -9 of the parent alone (not its process group) of a ``--workers 2`` run: its pool
    workers and the resource tracker are gone within seconds instead of idling on; the shard
    files left are complete, and --resume computes the rest."""
    out = tmp_path / "c.h5"
    folder = tmp_path / "c.h5.shards"
    run = ["--n", "6400", "--shard-points", "64", "-o", str(out)]  # 100 shards
    proc = subprocess.Popen([sys.executable, "-m", "physfield", "targets", *ARGS, *run, "--workers", "2"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(list(folder.glob("shard-*.h5"))) < 3:
            time.sleep(0.05)
        workers = children(proc.pid)
        assert proc.poll() is None, "the run ended before it was killed"
        assert len(workers) >= 2, workers  # two workers (and the resource tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and alive(workers):
            time.sleep(0.1)
        assert not alive(workers), f"orphaned processes {alive(workers)} outlived their killed parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, if the test failed
        except ProcessLookupError:
            pass
    assert not out.exists()
    written = list(folder.glob("shard-*.h5"))
    assert 3 <= len(written) < 100
    for path in written:  # a shard file that exists is complete
        with open_cache(path, verify=True) as cache:
            assert len(cache) == 64
    cli_run(*run, "--workers", "1", "--resume")
    cli_run("--n", "6400", "-o", str(tmp_path / "one.h5"))
    assert_same_datasets(out, tmp_path / "one.h5")
    assert not list(folder.glob(".*.tmp"))


def pf_cli():
    from cli import physfield

    return physfield


@pytest.mark.parametrize("args,match", [
    (["--shard-points", "64"], "go with --workers or --ray"),
    (["--copy"], "go with --workers or --ray"),
    (["--workers", "2", "--ray"], "choose --workers or --ray"),
])
def test_cli_sharding_options_are_checked(tmp_path, args, match):
    result = CliRunner().invoke(pf_cli(), ["targets", "--field", "strong", "--n", "10", "-o", str(tmp_path / "c.h5"),
                                           *args])
    assert result.exit_code == 2 and match in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_unreachable_ray_address_fails_at_once(tmp_path):
    """``--ray HOST:PORT`` with nothing there: one line naming the address within seconds (Ray
    itself retries for minutes), and no file written."""
    pytest.importorskip("ray")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "physfield", "targets", "--field", "strong", "--n", "10", "--ray",
                           "127.0.0.1:1", "-o", str(tmp_path / "c.h5")], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert done.returncode == 2 and "cannot reach Ray at 127.0.0.1:1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with two CPUs, started once for the test session; its workers can import the
    test modules as ``tests....`` (for :func:`flaky`)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([root, *sys.path])}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_equal_the_single_process_cache(tmp_path, local_ray, cached_kernels):
    kw = {**KW, "plan": "optimal", "store_pairs": True}
    cli_run("--n", "250", "--plan", "optimal", "--store-pairs", "-o", str(tmp_path / "one.h5"))
    engine = engines.Ray()
    assert engine.workers == 2
    generate(STRONG, "gaussian:3", "gaussian:3", 250, tmp_path / "ray.h5", engine=engine, shard_points=64, **kw)
    engine.close()  # a Ray it did not start stays up
    assert local_ray.is_initialized()
    assert_same_datasets(tmp_path / "ray.h5", tmp_path / "one.h5")


@pytest.mark.slow
def test_ray_retries_a_failed_task(tmp_path, local_ray):
    tasks = [("a", "raise", str(tmp_path)), ("b", "ok", str(tmp_path))]
    done = {}
    engines.run_all(engines.Ray(), flaky, tasks, retries=1, on_done=lambda task, result: done.update({task: result}))
    assert done == {tasks[0]: "A", tasks[1]: "B"}
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["a"])
