"""Sphinx configuration of rnnext's documentation site.

Built by ``bash .ci/docs`` (``sphinx-build -W --keep-going -n``): every
warning is an error and every cross-reference must resolve. Nothing is fetched
at build time: no intersphinx, the built-in ``alabaster`` theme, and a gallery
that runs on rnnext, NumPy, matplotlib and scikit-learn only.
"""

import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the gallery draws without a display

# The package from this checkout (its compiled core copied beside it) when it
# is not installed: CI runs with the package installed, a local build with
# PYTHONPATH=python or from this fallback.
ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("rnnext") is None:
    sys.path.insert(0, str(ROOT / "python"))
import rnnext  # noqa: E402

project = "rnnext"
author = "the rnnext developers"
copyright = "rnnext developers, MIT licence"
release = rnnext.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "snippets", "examples", "sg_execution_times.rst"]
default_role = "code"  # `x` in a docstring is code, never an unresolved reference

# --- API reference: one generated page per public object (docs/generated/).
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
# The docstrings state shapes and types in numpydoc's words; annotations in the
# signature would repeat them as unresolvable typing/numpy references.
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- docs/api.md, the project's contract, through MyST.
myst_heading_anchors = 3  # its "#planned-not-in-this-release" style links
myst_enable_extensions = ["colon_fence"]

# --- gallery: docs/examples/plot_*.py run at build time.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
}

html_theme = "alabaster"
html_title = f"rnnext {release}"
html_static_path = []
html_theme_options = {
    "description": "Fast recurrent neural networks on the CPU",
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}

# --- nitpicky mode (-n): references nothing here documents. Without
# intersphinx (no network at build time) names of other libraries cannot
# resolve; they are listed here by library, never rnnext's own names.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|onnx|keras|dask|distributed|sklearn|safetensors|tqdm)(\..*)?"),
    (r"py:.*", r"(typing|collections|os|io|pathlib)\..*"),
]


def _skip_sklearn_routing(app, what, name, obj, skip, options):
    """scikit-learn attaches ``set_*_request`` (metadata routing) to every
    estimator class; they are scikit-learn's, documented there, and their
    docstrings point into scikit-learn's own glossary."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_routing)
