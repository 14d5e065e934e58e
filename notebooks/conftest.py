"""nbval runs every notebook here; the real-data notebook skips only when ../shared is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared"))
NEEDS_SHARED = {"03_real_brats_case.ipynb"}


def pytest_collection_modifyitems(config, items):
    if (SHARED / "data" / "brats-example").is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"the real BraTS example is not at {SHARED / 'data' / 'brats-example'} "
        "(../shared is absent in a fresh clone elsewhere; set QE_NB_SHARED)"
    )
    for item in items:
        if Path(str(item.fspath)).name in NEEDS_SHARED:
            item.add_marker(skip)
