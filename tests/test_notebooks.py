"""The notebooks in notebooks/ run top to bottom in their fast setting and show what they promise.

Each is executed with nbclient in a fresh kernel with ``PHYSFIELD_NOTEBOOK_FAST=1`` and its
scratch folder (``PHYSFIELD_NOTEBOOK_DIR``) and working directory under ``tmp_path``, so nothing
is written into the repository. A cell that raises (the notebooks assert their physics and
training claims) fails the test; then a few outputs are looked for: the printed tables and the
pictures. The committed notebooks carry the outputs of a full run; those are not compared.
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 120  # seconds per cell

# notebook -> text its outputs must contain, and how many images at least
EXPECT = {
    "01_fields_and_lines.ipynb": (["arrived", "reversed", "leaked", "all 16 claimed properties hold",
                                   "strong: all lines arrive"], 5),
    "02_toy_training.ipynb": (["$ physfield targets", "$ learn train", "$ learn sample", "after training"], 4),
    "03_digits.ipynb": (["generation", "IFM-MB", "in-out", "classifier accuracy"], 3),
}

pytestmark = pytest.mark.slow  # each notebook in its own kernel


def outputs(nb):
    """All text the code cells printed or returned, and the number of PNG images they showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                text.append(out.data.get("text/plain", ""))
                images += "image/png" in out.data
    return "\n".join(text), images


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSFIELD_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("PHYSFIELD_NOTEBOOK_DIR", str(tmp_path / "work"))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:  # the committed outputs must not satisfy the checks below
        if cell.cell_type == "code":
            cell.outputs = []
    nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text, images = outputs(nb)
    assert "Traceback" not in text and "Error" not in text
    for expected in EXPECT[name][0]:
        assert expected in text, f"{name}: no output contains {expected!r}"
    assert images >= EXPECT[name][1], f"{name}: {images} images shown, expected {EXPECT[name][1]}"
