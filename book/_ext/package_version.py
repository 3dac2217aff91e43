"""Sphinx extension: the package's version, ``textnorm.__version__``, as the MyST substitution
``{{ version }}`` (and Sphinx's ``version``/``release``), so that no page types it.

    This book documents `textnorm` {{ version }}.

The value is read from ``textnorm/__init__.py`` under the book's source folder (the repository's
root), without importing the package: the book builds where only the book's tools are installed
(.github/workflows/book.yml).
"""

from __future__ import annotations

import ast
from pathlib import Path


def package_version(root: Path) -> str:
    """The string assigned to ``__version__`` in root/textnorm/__init__.py."""
    path = root / "textnorm" / "__init__.py"
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ValueError(f"{path} assigns no string to __version__")


def _configure(app, config) -> None:
    version = package_version(Path(app.srcdir))
    config.myst_substitutions = {**(config.myst_substitutions or {}), "version": version}
    config.version = config.release = version


def setup(app):
    app.connect("config-inited", _configure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
