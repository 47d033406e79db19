"""The package boundary: physfield is NumPy/Numba/POT/h5py and never pulls in torch."""

import subprocess
import sys


def test_importing_physfield_does_not_import_torch():
    code = "import sys, physfield; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
