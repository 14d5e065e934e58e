"""The public API: every promised name resolves, and the core imports without Jupyter."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qe_nb


@pytest.mark.parametrize("name", qe_nb.__all__)
def test_every_public_name_resolves(name):
    assert getattr(qe_nb, name) is not None


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        qe_nb.nope  # noqa: B018


def test_core_does_not_import_jupyter_or_matplotlib():
    code = (
        "import sys, qe_nb; qe_nb.score; qe_nb.alarms; qe_nb.calibrate; qe_nb.worklist; qe_nb.fuse; "
        "bad = [m for m in ('matplotlib', 'ipywidgets', 'IPython', 'dask') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
