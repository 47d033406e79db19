"""Data-parallel training under torchrun (gloo on the CPU).

- 2 ranks with ``--batch B`` (``B/2`` rows each) reach the parameters, EMA and loss curve of one
  process with batch ``B`` (allclose: only the order of float sums differs).
- A DDP run resumed from its checkpoint continues the uninterrupted DDP run.
- Only rank 0 writes the run folder; a global batch that the ranks cannot share is refused.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import physfield as pf
from learn import train as train_mod
from physfield.targets import generate

TRAIN = ["--steps", "24", "--batch", "64", "--checkpoint-every", "12", "--hidden", "32", "--depth", "2",
         "--warmup", "5", "--seed", "3"]

pytestmark = pytest.mark.slow  # torchrun ranks in subprocesses


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "c.h5"
    generate(pf.StrongField(L=6.0, sigma0=1.0, d=3.0), "gaussian", "moons", 4096, path, batch=128, seed=1)
    return path


def torchrun(*args, nproc=2):
    exe = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([exe, "--standalone", f"--nproc_per_node={nproc}", "-m", "learn", "train", *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def one_process(*args):
    done = subprocess.run([sys.executable, "-m", "learn", "train", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def weights(run):
    ckpt = train_mod.load_checkpoint(run)
    return ckpt, {**{f"model.{k}": v for k, v in ckpt["model"].items()}, **{f"ema.{k}": v for k, v in ckpt["ema"].items()}}


def assert_close(a, b):
    ca, wa = weights(a)
    cb, wb = weights(b)
    assert ca["step"] == cb["step"] and set(wa) == set(wb)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=2e-4, atol=2e-5, msg=k)
    torch.testing.assert_close(torch.tensor(ca["losses"]), torch.tensor(cb["losses"]), rtol=1e-4, atol=1e-6)


def test_two_ranks_take_the_steps_of_one_process_with_the_global_batch(cache, tmp_path):
    one_process("--targets", str(cache), "--out", str(tmp_path / "one"), *TRAIN)
    done = torchrun("--targets", str(cache), "--out", str(tmp_path / "two"), *TRAIN)
    assert done.stdout.count("checkpoint in") == 1, done.stdout  # the final line, from rank 0 only
    assert_close(tmp_path / "two", tmp_path / "one")
    record = json.loads((tmp_path / "two" / "run.json").read_text())
    assert record["train"]["batch"] == 64
    # a different split of the data would not match: one process on half the batch drifts away
    one_process("--targets", str(cache), "--out", str(tmp_path / "half"), *TRAIN[:2], "--batch", "32", *TRAIN[4:])
    with pytest.raises(AssertionError):
        assert_close(tmp_path / "half", tmp_path / "one")


def test_ddp_resume_continues_the_uninterrupted_run(cache, tmp_path):
    torchrun("--targets", str(cache), "--out", str(tmp_path / "whole"), *TRAIN)
    short = [*TRAIN]
    short[1] = "12"
    torchrun("--targets", str(cache), "--out", str(tmp_path / "parts"), *short)
    assert train_mod.load_checkpoint(tmp_path / "parts")["step"] == 12
    torchrun("--targets", str(cache), "--out", str(tmp_path / "parts"), *TRAIN, "--resume")
    assert_close(tmp_path / "parts", tmp_path / "whole")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, size, port, cache, out, log):
    """One rank of a 2-process run started here (as torchrun would), logging every file it
    writes."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from learn import data

    written, rows = [], []
    real_save, real_write, real_get = train_mod._atomic_save, Path.write_text, data.Batches.get
    train_mod._atomic_save = lambda obj, path: (written.append(str(path)), real_save(obj, path))
    Path.write_text = lambda self, *a, **k: (written.append(str(self)), real_write(self, *a, **k))[1]
    data.Batches.get = lambda self, k, lo=0, hi=None: (rows.append([k, lo, hi]), real_get(self, k, lo, hi))[1]
    try:
        cfg = train_mod.TrainConfig(targets=cache, out=out, steps=4, batch=8, checkpoint_every=2, hidden=8, depth=1)
        train_mod.train(cfg)
    finally:
        Path.write_text = real_write
        with open(f"{log}.{rank}", "w") as f:
            json.dump({"written": written, "rows": rows}, f)


def test_only_rank_zero_writes_and_ranks_read_disjoint_halves(cache, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    torch.multiprocessing.spawn(rank_main, args=(2, free_port(), str(cache), str(out), str(log)), nprocs=2)
    rank0, rank1 = (json.loads(Path(f"{log}.{r}").read_text()) for r in (0, 1))
    assert rank1["written"] == []
    assert sum(p.endswith("checkpoint.pt") for p in rank0["written"]) == 2
    assert any(p.endswith("run.json") for p in rank0["written"])
    assert train_mod.load_checkpoint(out)["step"] == 4
    assert rank0["rows"] == [[k, 0, 4] for k in range(4)] and rank1["rows"] == [[k, 4, 8] for k in range(4)]


def test_a_batch_the_ranks_cannot_share_is_refused(cache, tmp_path):
    exe = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    done = subprocess.run([exe, "--standalone", "--nproc_per_node=2", "-m", "learn", "train", "--targets", str(cache),
                           "--out", str(tmp_path / "r"), "--steps", "2", "--batch", "63"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--batch 63 is not a multiple of the 2 processes" in done.stderr
    assert not (tmp_path / "r").exists()
