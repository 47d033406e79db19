"""The package boundary (physfield is NumPy/Numba/POT/h5py and never pulls in torch) and the README's example."""

import subprocess
import sys


def test_importing_physfield_does_not_import_torch():
    code = "import sys, physfield; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_readme_python_example_runs():
    """The README's "In Python" block, as printed, runs and gives what its comments say."""
    import re
    from pathlib import Path

    import numpy as np

    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## In Python\n\n```python\n(.*?)```", text, re.S).group(1)
    names = {}
    exec(compile(block, "README.md", "exec"), names)
    u, log_norm, points = names["u"], names["log_norm"], names["points"]
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-12)
    want = names["strong"].direction(points, names["A"], names["B"], plan="optimal")
    for got, exp in zip((u, log_norm), want):
        np.testing.assert_array_equal(got, exp)
    assert names["res"].stats["arrived"] == 1.0
