"""Deprecated module paths of versions before 0.2, kept importable for one release.

Up to 0.1 every module sat in one flat folder (``qe_nb.metrics``, ``qe_nb.widgets``, ...).
They now live in layers (``qe_nb.core``, ``qe_nb.data``, ``qe_nb.pipeline``, ``qe_nb.ui``).
``import qe_nb.metrics`` and ``from qe_nb.widgets import CalibrationExplorer`` still work:
the old name is an alias of the new module, and importing it warns once with the new path.
The top-level API (``qe_nb.score``, ``qe_nb.alarms``, ...) is unchanged and is the way to go.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old module path -> new module path
MOVED_MODULES: dict[str, str] = {
    "qe_nb.labels": "qe_nb.core.labels",
    "qe_nb.metrics": "qe_nb.core.metrics",
    "qe_nb.fusion": "qe_nb.core.fusion",
    "qe_nb.alarms": "qe_nb.core.alarms",
    "qe_nb.calibration": "qe_nb.core.calibration",
    "qe_nb.triage": "qe_nb.core.triage",
    "qe_nb._validate": "qe_nb.core.checks",
    "qe_nb.io": "qe_nb.data.images",
    "qe_nb.ensemble": "qe_nb.data.ensemble",
    "qe_nb.manifest": "qe_nb.data.manifest",
    "qe_nb.synth": "qe_nb.data.synth",
    "qe_nb.scoring": "qe_nb.pipeline.scoring",
    "qe_nb._progress": "qe_nb.progress",
    "qe_nb.plots": "qe_nb.ui.plots",
    "qe_nb.widgets": "qe_nb.ui.widgets",
    "qe_nb.triage_app": "qe_nb.ui.triage_app",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec):
        warnings.warn(
            f"`{spec.name}` moved to `{self.new}` in qe_nb 0.2 and the old path will be removed "
            f"in 0.3; import `{self.new}`, or use the top-level API (`import qe_nb`).",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        """The new module is already executed; nothing to do."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install_module_aliases() -> None:
    """Make the pre-0.2 module paths importable (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
