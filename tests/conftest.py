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

from tests.helpers import BACKENDS  # noqa: E402

settings.register_profile(
    "physfield",
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("physfield")


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    """Each registered backend usable on this machine, by name."""
    return request.param


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_stops_the_suite():
    """A command run through click's runner reports Ctrl-C as its exit status 130 and returns;
    here it is raised again, so that Ctrl-C stops the test suite instead of one test."""
    from click.testing import CliRunner

    invoke = CliRunner.invoke

    def invoke_and_reraise(self, *args, **kwargs):
        result = invoke(self, *args, **kwargs)
        if result.exit_code == 130 or isinstance(result.exception, KeyboardInterrupt):
            raise KeyboardInterrupt
        return result

    CliRunner.invoke = invoke_and_reraise
    yield
    CliRunner.invoke = invoke
