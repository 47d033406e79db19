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


def test_public_names_resolve_and_shadow_no_module():
    """Every name of ``__all__`` in physfield and learn (and their subpackages) resolves, carries a
    docstring, and no attribute of a package hides a submodule of the same name behind another
    object (``physfield.trace`` is the function; the module is ``physfield.tracing``)."""
    import importlib
    import inspect
    import pkgutil

    import learn
    import physfield

    packages = [physfield, learn, *(importlib.import_module(f"physfield.{name}")
                                   for name in ("fields", "kernels", "lines", "targets"))]
    for package in packages:
        for name in package.__all__:
            obj = getattr(package, name)
            if name != "__version__":
                assert inspect.getdoc(obj), f"{package.__name__}.{name} has no docstring"
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.startswith("_") or not hasattr(package, module.name):
                continue
            assert inspect.ismodule(getattr(package, module.name)), f"{package.__name__}.{module.name} is shadowed"


def public_callables():
    """``(qualified name, object)`` of every public function and class: the names of ``__all__``
    in physfield and its subpackages, and the top-level public ones of each learn module."""
    import importlib
    import inspect

    import physfield

    found, seen = {}, set()

    def walk(module):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                if obj.__name__ not in seen and hasattr(obj, "__all__"):
                    seen.add(obj.__name__)
                    walk(obj)
            elif inspect.isfunction(obj) or inspect.isclass(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj

    walk(physfield)
    for name in ("sample", "check", "logprob", "evaluate", "train", "data", "regression", "models", "classifier",
                 "record", "distributed", "slope", "guidance", "pictures"):
        module = importlib.import_module(f"learn.{name}")
        for key, obj in vars(module).items():
            if not key.startswith("_") and getattr(obj, "__module__", None) == module.__name__ and (
                    inspect.isfunction(obj) or inspect.isclass(obj)):
                found[f"{module.__name__}.{key}"] = obj
    return sorted(found.items())


def test_public_callables_have_numpydoc_parameters():
    """Every public function and class documents each parameter of its signature in a numpydoc
    ``Parameters`` section (the Sphinx API reference is built from them)."""
    import inspect

    undocumented = []
    for name, obj in public_callables():
        try:
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError):
            continue
        section = (inspect.getdoc(obj) or "").partition("Parameters\n----------")[2]
        missing = [p for p in params if p.lstrip("*") not in section]
        if params and (not section or missing):
            undocumented.append(f"{name}: {', '.join(missing)}")
    assert not undocumented, "\n".join(undocumented)
