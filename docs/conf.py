"""Sphinx configuration of physfield's documentation (``python -m sphinx -W -b html docs OUT``)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # the CUDA kernels import without a GPU
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # cli.py, physfield and learn from this tree

project = "physfield"
author = "physfield developers"
copyright = "2026, physfield developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_autosummary/*.rst~"]
myst_heading_anchors = 3
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
templates_path = ["_templates"]
