"""NRRD, MHA and MetaImage masks: found by open_ensemble's patterns, scored as their NIfTI twins.

One synthetic glioma cohort is written in every format SimpleITK gives qe_nb for volumes, on
the same non-trivial grid (anisotropic voxels exact in float32, a rotated direction), and
scored through the Python API and the command line; the cubes must be equal to the last bit.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr

import qe_nb
from qe_nb.cli import main
from qe_nb.data.geometry import Geometry, first_difference
from qe_nb.data.images import read_image, write_image
from qe_nb.data.loading import load_label_maps
from qe_nb.exceptions import EnsembleError

FORMATS = ("nii.gz", "nrrd", "mha", "mhd", "nii")
ANGLE = np.deg2rad(30.0)
ROTATION = (1.0, 0.0, 0.0, 0.0, np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE))
METRICS = ("dice", "hd95", "nsd", "assd")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """The same masks under root/<format>/<case>/<name>.<format>, one folder per format."""
    root = tmp_path_factory.mktemp("formats")
    qe_nb.synthetic_cohort(root / "synthetic", kind="glioma", n_cases=4, n_algorithms=3,
                           shape=(20, 24, 28), seed=5, images=False)
    grid = None
    for path in sorted((root / "synthetic").glob("*/*.nii.gz")):
        array, own = read_image(path)
        grid = Geometry(own.shape, spacing=(2.0, 0.75, 1.25), origin=(-11.5, 3.25, 7.0), direction=ROTATION)
        name = path.name[: -len(".nii.gz")]
        for suffix in FORMATS:
            folder = root / suffix / path.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            write_image(array, folder / f"{name}.{suffix}", geometry=grid)
    return root, grid


def _score(root, suffix, **kwargs):
    ens = qe_nb.open_ensemble(root, masks="{case}/{algorithm}." + suffix, reference="{case}/reference." + suffix,
                              labels="brats-regions")
    assert ens.sizes["case"] == 4 and ens.sizes["algorithm"] == 3
    return qe_nb.score(ens, metrics=METRICS, n_jobs=1, progress=False, on_error="raise", **kwargs)


@pytest.fixture(scope="module")
def nifti_scores(cohorts):
    root, _ = cohorts
    return _score(root / "nii.gz", "nii.gz")


@pytest.mark.parametrize("suffix", ["nrrd", "mha", "mhd", "nii"])
def test_format_scores_as_nifti(cohorts, nifti_scores, suffix):
    root, grid = cohorts
    scores = _score(root / suffix, suffix)
    for variable in ("similarity", "quality"):
        got, expected = scores[variable], nifti_scores[variable]
        assert got.dims == expected.dims and got.shape == expected.shape
        assert np.isfinite(expected.sel(metric="dice").values).all()
        np.testing.assert_array_equal(got.values, expected.values)
        xr.testing.assert_equal(got.reset_coords(drop=True), expected.reset_coords(drop=True))
    # not trivially equal: the candidates differ, and the spacing is in the distances
    assert np.nanmin(nifti_scores["similarity"].sel(metric="dice").values) < 0.99
    ens = qe_nb.open_ensemble(root / suffix, masks="{case}/{algorithm}." + suffix,
                              reference="{case}/reference." + suffix, labels="brats-regions")
    maps = load_label_maps(ens, "case-000")
    assert first_difference(Geometry.from_attrs(maps.attrs, maps.shape), grid, rtol=1e-6, shape_only=False) is None


def test_scores_change_with_the_spacing(cohorts, nifti_scores, tmp_path):
    """The comparison above would catch a reader that drops the spacing: at unit spacing the
    surface distances differ."""
    root, _ = cohorts
    unit = _score(root.joinpath("synthetic"), "nii.gz")
    hd95 = nifti_scores["similarity"].sel(metric="hd95").values
    assert not np.allclose(np.nan_to_num(unit["similarity"].sel(metric="hd95").values), np.nan_to_num(hd95))


def test_pattern_without_suffix_finds_every_format(cohorts, tmp_path):
    root, _ = cohorts
    for suffix in ("nrrd", "mha", "nii.gz"):
        ens = qe_nb.open_ensemble(root / suffix, masks="{case}/{algorithm}", reference="{case}/reference",
                                  labels="brats-regions")
        assert sorted(map(str, ens.algorithm.values)) == ["deepmedic-c", "nnunet-b", "unet-a"]
        assert all(str(p).endswith("." + suffix) for p in ens["mask"].values.ravel())
    # the same candidate in two formats is ambiguous without a suffix, and fine with one
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "nrrd", mixed)
    for path in (root / "mha").glob("case-000/unet-a.mha"):
        shutil.copy(path, mixed / "case-000" / path.name)
    with pytest.raises(EnsembleError, match="two files map to"):
        qe_nb.open_ensemble(mixed, masks="{case}/{algorithm}", reference="{case}/reference", labels="brats-regions")
    ens = qe_nb.open_ensemble(mixed, masks="{case}/{algorithm}.nrrd", reference="{case}/reference.nrrd",
                              labels="brats-regions")
    assert ens.sizes["algorithm"] == 3


def test_formats_mix_within_a_case(cohorts, nifti_scores, tmp_path):
    """Candidates in NRRD and MHA, the reference in NIfTI: one grid, the same scores."""
    root, _ = cohorts
    mixed = tmp_path / "mixed"
    for case in sorted(p.name for p in (root / "nrrd").iterdir()):
        (mixed / case).mkdir(parents=True)
        shutil.copy(root / "nrrd" / case / "unet-a.nrrd", mixed / case / "unet-a.nrrd")
        shutil.copy(root / "mha" / case / "nnunet-b.mha", mixed / case / "nnunet-b.mha")
        shutil.copy(root / "mhd" / case / "deepmedic-c.mhd", mixed / case / "deepmedic-c.mhd")
        for raw in (root / "mhd" / case).glob("deepmedic-c.*raw"):
            shutil.copy(raw, mixed / case / raw.name)
        shutil.copy(root / "nii.gz" / case / "reference.nii.gz", mixed / case / "reference.nii.gz")
    ens = qe_nb.open_ensemble(mixed, masks="{case}/{algorithm}", reference="{case}/reference.nii.gz",
                              labels="brats-regions")
    scores = qe_nb.score(ens, metrics=METRICS, n_jobs=1, progress=False, on_error="raise")
    for variable in ("similarity", "quality"):
        got, expected = scores[variable], nifti_scores[variable]
        if "algorithm" in got.dims:
            expected = expected.sel(algorithm=got.algorithm.values)
        np.testing.assert_array_equal(got.values, expected.values)


@pytest.mark.parametrize("suffix", ["mha", "nrrd"])
def test_cli_scores_the_format(cohorts, nifti_scores, tmp_path, suffix, capsys):
    root, _ = cohorts
    out = tmp_path / "scores.nc"
    status = main(["score", str(root / suffix), "--masks", "{case}/{algorithm}." + suffix,
                   "--reference", "{case}/reference." + suffix, "--labels", "brats-regions",
                   "--metrics", ",".join(METRICS), "--out", str(out), "--quiet", "--jobs", "1"])
    assert status == 0, capsys.readouterr().err
    scores = qe_nb.load_scores(out)
    for variable in ("similarity", "quality"):
        expected = nifti_scores[variable]
        got = scores[variable].sel({dim: expected[dim].values for dim in expected.dims})
        np.testing.assert_array_equal(got.values, expected.values)
