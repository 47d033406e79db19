"""Helpers the tests share: the backends usable here, a one-line error's check, the learn CLI."""

from physfield.kernels import available

#: the backends that can run here (numpy, numba; cupy with a GPU): every backend test runs over these
BACKENDS = available()

#: a tiny learn net and batch, for tests of the plumbing rather than of the learning
TINY = ["--hidden", "32", "--depth", "2", "--emb", "8", "--batch", "64"]


def one_line_error(result):
    """A click result that failed on bad input: exit status 2 and exactly one ``Error:`` line,
    no traceback. Returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def invoke(*args):
    """Run ``learn ARGS...`` in process (click's runner); the click result."""
    from click.testing import CliRunner

    from cli import learn

    return CliRunner().invoke(learn, [str(a) for a in args])


def run_record(field, target_kind, source="gaussian", target="gaussian", dim=2, eps=None, net=None, steepest=None):
    """A :class:`learn.record.RunRecord` of a net trained on ``field``'s targets between ``source``
    and ``target`` (what ``learn train`` records), for tests that hand the sampler a net of their own."""
    import physfield as pf
    from learn.record import RunRecord
    from learn.train import TrainConfig

    run = pf.targets.make_run(field, source, target, 64, "paired", 0.05, None, None, eps, None, 0, dim, "numpy", False)
    return RunRecord(run, TrainConfig("-", "-", target=target_kind), net or {"kind": "mlp"}, 0, steepest)
