"""Test settings: deterministic hypothesis, and the CUDA simulator unless a GPU run is asked for.

``NUMBA_ENABLE_CUDASIM=1`` must be set before ``numba.cuda`` is first imported, so it is set
here, at collection. Set ``PHYSFIELD_TEST_GPU=1`` on a machine with a GPU to run the CUDA
kernels for real (and the ``cupy`` backend tests).
"""

import os

if os.environ.get("PHYSFIELD_TEST_GPU") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from physfield.kernels import available  # noqa: E402

#: the backends that can run here (numpy, numba; cupy with a GPU): every backend test runs over these
BACKENDS = available()

settings.register_profile(
    "physfield",
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("physfield")


def one_line_error(result):
    """A click result that failed on bad input: exit status 2 and exactly one ``Error:`` line,
    no traceback. Returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    """Each registered backend usable on this machine, by name."""
    return request.param


#: a tiny learn net and batch, for tests of the plumbing rather than of the learning
TINY = ["--hidden", "32", "--depth", "2", "--emb", "8", "--batch", "64"]


def invoke(*args):
    """Run ``learn ARGS...`` in process (click's runner); the click result."""
    from click.testing import CliRunner

    from cli import learn

    return CliRunner().invoke(learn, [str(a) for a in args])
