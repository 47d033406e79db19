"""The documentation under ``docs/`` builds with Sphinx, warnings as errors: every docstring the
API reference renders is valid reStructuredText and every README section the pages include
still exists."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    html = {p.name: p.read_text() for p in (tmp_path / "html").rglob("*.html")}
    for page in ("index.html", "getting_started.html", "mathematics.html", "commands.html", "own_field.html",
                 "scaling_out.html", "api.html"):
        assert page in html
    assert "Interaction Field Matching" in html["mathematics.html"] and "Kolesov" in html["mathematics.html"]
    assert "quick tier" in html["getting_started.html"]  # the README's sections, included
    assert "follow_arc" in html["physfield.lines.arc.html"]  # the API reference from the docstrings
    assert "Interaction Field Matching" in html["physfield.fields.strong.html"]
