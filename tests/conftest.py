"""Shared fixtures: tiny synthetic arrays and the real case in ../shared when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared"))
BRATS_EXAMPLE = SHARED / "data" / "brats-example"
BRATS_CASE = BRATS_EXAMPLE / "TCGA-DU-7294"
BRATS_ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")


def _require_shared() -> None:
    if not BRATS_CASE.is_dir():
        pytest.skip(
            f"the real BraTS example is not at {BRATS_EXAMPLE} (../shared is absent in a fresh "
            "clone elsewhere; set QE_NB_SHARED to point at it)"
        )


@pytest.fixture(scope="session")
def brats_case_dir() -> Path:
    """The folder of the real glioma case (skips only when ../shared is absent)."""
    _require_shared()
    return BRATS_CASE


@pytest.fixture(scope="session")
def brats_candidates(brats_case_dir) -> dict[str, np.ndarray]:
    """The five candidate label maps of the real case, as uint8 arrays (z, y, x)."""
    import SimpleITK as sitk

    return {
        name: sitk.GetArrayFromImage(sitk.ReadImage(str(brats_case_dir / "segmentation" / f"{name}.nii.gz")))
        for name in BRATS_ALGORITHMS
    }


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# --- review store (issue 17): the session's PostgreSQL server, shared by the store test modules.
# Defined in tests/pg_server.py; imported here so that one server serves every module.
from .pg_server import postgres_server  # noqa: E402,F401
