"""Import the ``imagecorruptions`` package (Michaelis et al., 1.1.2) on current numpy/skimage/setuptools.

Its last release (2020) uses three names that have since gone: ``pkg_resources`` (setuptools >= 81),
``np.float_`` (numpy 2) and ``skimage.filters.gaussian(multichannel=True)`` (scikit-image >= 0.21).
``load()`` supplies each one to the package's own module only (numpy, skimage and ``sys.modules``
are left as they were), so fog, glass blur and gaussian blur run instead of raising.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import textwrap
import types
import warnings


def load() -> types.ModuleType:
    """The ``imagecorruptions`` package, patched to run; ImportError (with how to install) if absent."""
    stubbed = False
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stubbed = True
        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda package, name: os.path.join(
            os.path.dirname(sys.modules[package].__file__), name
        )
        sys.modules["pkg_resources"] = stub
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # scipy.ndimage.interpolation
            package = importlib.import_module("imagecorruptions")
    except ImportError as error:
        raise ImportError(
            f"imagecorruptions is not importable ({error}); install the dev dependencies "
            "(`make venv`, or `pip install -e '.[dev]' && pip install --no-deps imagecorruptions==1.1.2`)"
        ) from error
    finally:
        if stubbed:  # the package has bound resource_filename; nothing else should see the stub
            del sys.modules["pkg_resources"]
    module = package.corruptions
    if not hasattr(module.np, "float_"):
        numpy = module.np
        proxy = types.ModuleType("numpy")
        proxy.__getattr__ = lambda name: getattr(numpy, name)  # module-level __getattr__ (PEP 562)
        proxy.float_ = numpy.float64
        module.np = proxy
    if not getattr(module.gaussian, "_ctta_compat", False):
        gaussian = module.gaussian

        def compat_gaussian(image, *args, multichannel=None, **kwargs):
            if multichannel:
                kwargs["channel_axis"] = -1
            return gaussian(image, *args, **kwargs)

        compat_gaussian._ctta_compat = True
        module.gaussian = compat_gaussian
    return package


def load_for_benchmark():
    """``load()`` for the benchmark scripts: None (after saying why) when the package is missing,
    else the package with torch and OpenCV on one thread, so both sides run alike."""
    try:
        package = load()
    except ImportError as error:
        print(f"skipped: {error}")
        return None
    import torch

    torch.set_num_threads(1)
    package.corruptions.cv2.setNumThreads(1)
    return package


# The package implements the ImageNet-C recipe only. For the CIFAR comparison its own functions are
# recompiled with the constants of Hendrycks' make_cifar_c.py (ctta's ``cifar`` table) in place of
# their statement ``c = [...][severity - 1]``; frost also shrinks its photographs by 0.2, as
# make_cifar_c.py does. Elastic transform is left out: the package's recipe is not the original's
# (no affine part, other constants), so there is nothing to substitute.
def _cifar_constants(name: str, table: tuple) -> str:
    if name == "zoom_blur":
        items = [f"np.arange(1, {stop!r}, {step!r})" for stop, step in table]
    elif name == "frost":
        items = [repr(tuple(entry[:2])) for entry in table]
    else:
        items = [repr(entry) for entry in table]
    return f"c = [{', '.join(items)}][severity - 1]"


def cifar_functions(package: types.ModuleType, params: dict) -> dict:
    """name -> the package's function with CIFAR constants, called as ``f(PIL image, severity)``."""
    module = package.corruptions
    namespace = dict(vars(module))
    cv2 = module.cv2
    shrunk = types.ModuleType("cv2")
    shrunk.__getattr__ = lambda name: getattr(cv2, name)
    shrunk.imread = lambda path: cv2.resize(cv2.imread(path), (0, 0), fx=0.2, fy=0.2)
    namespace["cv2"] = shrunk
    functions = {}
    for name, tables in params.items():
        if name == "elastic_transform" or not hasattr(module, name):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(module, name))))
        body = tree.body[0].body
        first = next(
            i
            for i, stmt in enumerate(body)
            if isinstance(stmt, ast.Assign) and ast.unparse(stmt.targets[0]) == "c"
        )
        body[first] = ast.parse(_cifar_constants(name, tables["cifar"])).body[0]
        exec(compile(ast.fix_missing_locations(tree), f"<{name} with CIFAR constants>", "exec"), namespace)
        functions[name] = namespace[name]
    return functions


def original_cifar_frost(package: types.ModuleType, params: dict):
    """make_cifar_c.py's frost, ``f(PIL image, severity)``, on the package's photographs: shrink one
    of the first five by 0.2 (cv2.resize), crop 32 px, add. The package's own frost also enlarges
    the photograph by 1.1 (bicubic) before cropping, which the original does not, so frost is
    held against this one as well."""
    module = package.corruptions
    folder = os.path.join(os.path.dirname(module.__file__), "frost")
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    photos = [
        module.cv2.resize(module.cv2.imread(os.path.join(folder, n)), (0, 0), fx=0.2, fy=0.2) for n in names
    ]
    np = module.np

    def frost(image, severity):
        c = params["frost"]["cifar"][severity - 1]
        photo = photos[np.random.randint(5)]
        top, left = np.random.randint(0, photo.shape[0] - 32), np.random.randint(0, photo.shape[1] - 32)
        layer = photo[top : top + 32, left : left + 32][..., [2, 1, 0]]
        return np.clip(c[0] * np.array(image) + c[1] * layer, 0, 255)

    return frost
