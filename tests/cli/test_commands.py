"""``physfield trace`` and ``physfield targets`` through click's runner (and trace once for real)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import physfield as pf
from cli import physfield
from tests.helpers import one_line_error

FAST = ["--n", "32", "--lines", "48"]


def invoke(*args):
    return CliRunner().invoke(physfield, list(args))


def test_trace_strong_table_and_json():
    table = invoke("trace", "--field", "strong", *FAST)
    assert table.exit_code == 0, table.output
    assert "arrived" in table.output and "strong" in table.output
    report = json.loads(invoke("trace", "--field", "strong", "--json", *FAST).output)
    (run,) = report["runs"]
    assert (run["arrived"], run["reversed"], run["leaked"], run["lost"]) == (1.0, 0.0, 0.0, 0.0)
    assert run["n_lines"] == 48 and run["w2"] > 0


def test_trace_coulomb_reverses_and_leaks():
    report = json.loads(invoke("trace", "--field", "coulomb", "--json", "--n", "48", "--lines", "200").output)
    (run,) = report["runs"]
    assert run["reversed"] > 0.3 and run["leaked"] > 0


def test_sweep_traces_both_fields_at_every_L():
    report = json.loads(invoke("trace", "--field", "strong,coulomb", "--sweep-L", "6,20", "--json", *FAST).output)
    assert [(r["field"], r["L"]) for r in report["runs"]] == [
        ("strong", 6.0), ("coulomb", 6.0), ("strong", 20.0), ("coulomb", 20.0)]
    assert all(r["arrived"] == 1.0 for r in report["runs"] if r["field"] == "strong")


def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "lines.png"
    result = invoke("trace", "--field", "coulomb", "--plot", str(png), *FAST)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize("args,word", [
    (["--sweep-L", "6,x"], "could not convert"),
    (["--source", "nonsense"], "nonsense"),
    (["--d", "10"], "d must"),
    (["--L", "-1"], "L must"),
])
def test_trace_bad_input_is_one_line(args, word):
    assert word in one_line_error(invoke("trace", "--field", "strong", *args))


def test_trace_runs_as_a_real_command():
    exe = shutil.which("physfield") or str(Path(sys.executable).parent / "physfield")
    out = subprocess.run([exe, "trace", "--field", "strong", "--json", *FAST], capture_output=True, text=True,
                         check=True, timeout=120, stdin=subprocess.DEVNULL).stdout
    assert json.loads(out)["runs"][0]["arrived"] == 1.0


def test_targets_writes_resumes_and_refuses(tmp_path):
    out = tmp_path / "cache.h5"
    args = ["targets", "--field", "strong", "--source", "gaussian", "--target", "moons", "--batch", "16",
            "--plan", "optimal", "-o", str(out)]
    first = invoke(*args, "--n", "40")
    assert first.exit_code == 0, first.output
    assert "points/s" in first.output
    assert "exists" in one_line_error(invoke(*args, "--n", "40"))
    assert invoke(*args, "--n", "64", "--resume").exit_code == 0
    with pf.targets.open_cache(out) as cache:
        assert len(cache) == 64 and cache.attrs["plan"] == "optimal"
        u = cache.targets[:]
        assert np.allclose((u.astype(np.float64) ** 2).sum(axis=1), 1, atol=1e-5)
    assert "seed" in one_line_error(invoke(*args, "--n", "80", "--resume", "--seed", "3"))
    assert "z_schedule" in one_line_error(invoke(*args, "--n", "80", "--resume", "--z-schedule", "logit-normal"))
    assert "'cosine' is not one of" in one_line_error(invoke(*args, "--n", "80", "--z-schedule", "cosine"))


def test_targets_refuses_a_foreign_file(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    one_line_error(invoke("targets", "--field", "strong", "--n", "16", "--batch", "8", "-o", str(foreign),
                          "--resume"))


def test_field_options_are_the_registered_fields_own_parameters():
    """check, trace and targets take one option per constructor parameter of the registered
    fields, described in the field's own docstring words, and pass it to the fields that take it."""
    import cli

    wanted = {p for kind in pf.fields.names() for p in pf.fields.get(kind).parameter_names()} - {"L"}
    assert set(cli.FIELD_PARAMETERS) == wanted == {"sigma0", "d"}
    assert cli.FIELD_PARAMETERS["sigma0"] == "strong: string width between the end regions [default: 1.0]"
    for command in (cli.check, cli.trace, cli.targets):
        assert wanted | {"L", "extra", "spec", "source", "target", "dim", "seed", "backend"} <= {
            p.name for p in command.params}
    report = json.loads(invoke("trace", "--field", "strong,coulomb", "--sigma0", "0.7", "--d", "2", "--json",
                               *FAST).output)
    assert [r["field"] for r in report["runs"]] == ["strong", "coulomb"]
    results = pf.tracing.sweep(["strong", "coulomb"], [6.0], *pf.data.draw_pair("gaussian", "8gaussians", 32)[:2],
                               {"sigma0": 0.7, "d": 2.0}, n_lines=8)
    assert [f.params() for f, _ in results] == [{"kind": "strong", "L": 6.0, "sigma0": 0.7, "d": 2.0},
                                              {"kind": "coulomb", "L": 6.0}]


def test_python_gets_what_the_commands_print():
    """The library functions behind check and trace give the CLI's numbers for the same seed:
    physfield.report.check and text, physfield.data.draw_pair, physfield.tracing.sweep and table."""
    from physfield import report

    args = ["--field", "strong", "--n", "24", "--seed", "5"]
    printed = json.loads(invoke("check", *args, "--only", "superposition,lines_arrived", "--json").output)
    mine = report.check(pf.StrongField(), n=24, seed=5, only=["superposition", "lines_arrived"])
    assert [(r["name"], r["value"]) for r in mine["checks"]] == [(r["name"], r["value"]) for r in printed["checks"]]
    assert report.text(mine).splitlines()[-1].startswith("all 2 claimed properties hold")
    A, B, spare = pf.data.draw_pair("gaussian", "8gaussians", 24, seed=5)
    again = pf.data.draw_pair("gaussian", "8gaussians", 24, seed=5)
    assert np.array_equal(A, again[0]) and np.array_equal(B, again[1]) and spare == again[2]
    assert not np.array_equal(A, pf.data.draw_pair("gaussian", "8gaussians", 24, seed=6)[0])
    traced = json.loads(invoke("trace", *args, "--lines", "16", "--json").output)["runs"][0]
    (field, res), = pf.tracing.sweep(["strong"], [6.0], A, B, n_lines=16, seed=spare)
    assert res.stats["w2"] == traced["w2"] and res.stats["arrived"] == traced["arrived"]
    assert pf.tracing.table([(field, res)]).splitlines()[1].split()[:2] == ["strong", "6"]


def test_missing_output_folders_are_created(tmp_path, monkeypatch):
    """``-o`` and ``--plot`` into a folder that does not exist yet: the folder is made; a folder
    that cannot be made (a file is in the way) is one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    done = invoke("trace", "--field", "strong", *FAST, "--plot", "pictures/new/lines.png")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "pictures" / "new" / "lines.png").stat().st_size > 0
    done = invoke("targets", "--field", "strong", "--n", "16", "--batch", "8", "-o", "caches/c.h5")
    assert done.exit_code == 0 and (tmp_path / "caches" / "c.h5").is_file(), done.output
    (tmp_path / "blocked").write_text("a file, not a folder")
    assert "cannot create the folder of blocked/x.png" in one_line_error(
        invoke("trace", "--field", "strong", *FAST, "--plot", "blocked/x.png"))


def test_long_work_prints_plain_progress_lines_when_not_on_a_terminal(tmp_path, monkeypatch):
    """Captured output is not a terminal: targets, trace and check write plain progress lines
    (here every 0 s) with the count, the rate and the time left, and a last line at the end."""
    import re

    monkeypatch.setenv("PHYSFIELD_PROGRESS_SECONDS", "0")
    done = invoke("targets", "--field", "strong", "--n", "48", "--batch", "16", "-o", str(tmp_path / "c.h5"))
    assert done.exit_code == 0, done.output
    lines = [line for line in done.output.splitlines() if line.startswith("targets: ")]
    assert re.fullmatch(r"targets: 16/48 pts \(33%\), \S+ pts/s, \d+:\d\d:\d\d left", lines[0]), lines
    assert lines[-1].startswith("targets: 48/48 pts (100%)") and "\r" not in done.output
    done = invoke("trace", "--field", "strong", *FAST)
    assert "tracing: 48/48 lines (100%)" in done.output, done.output
    done = invoke("check", "--field", "strong", "--n", "16", "--only", "superposition,min_ez")
    assert re.search(r"checking StrongField\(.*\): 2/2 checks \(100%\)", done.output), done.output
