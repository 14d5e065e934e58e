"""Hostile names and files around a finished run: the scores file and the cache (issue 15).

A case folder whose name is not UTF-8 is kept (escaped reversibly in the scores file); a file
replaced behind the cache's back (same size, mtime restored) is recomputed; a scores file whose
variables lack their coordinates is refused with the file named.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.exceptions import InputError
from qe_nb.pipeline.cache import files_key

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="non-UTF-8 and inode semantics of Linux")

LATIN1 = os.fsdecode(b"lat\xe9n")
"""The case id that a folder named b'lat\\xe9n' (Latin-1, not UTF-8) gets: 'lat\\udce9n'."""


def _write(arr, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.asarray(arr, dtype=np.uint8)), str(path))


def _cube(lo, hi, shape=(10, 10, 10)):
    arr = np.zeros(shape, np.uint8)
    arr[lo:hi, lo:hi, lo:hi] = 1
    return arr


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "cohort"
    for case, shift in (("plain", 0), ("other", 1)):
        for name, lo in (("a", 2), ("b", 2 + shift), ("c", 3)):
            _write(_cube(lo, 7), root / case / f"{name}.nii")
    latin = os.fsencode(root) + b"/lat\xe9n"
    os.makedirs(latin)
    for name, lo in (("a", 2), ("b", 3), ("c", 3)):
        _write(_cube(lo, 7), root / "plain" / "tmp.nii")
        os.rename(os.fsencode(root / "plain" / "tmp.nii"), latin + f"/{name}.nii".encode())
    return root


def _score(root, *, reference=None, **kw):
    ensemble = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii", reference=reference, labels="binary")
    return qe_nb.score(ensemble, metrics=("dice",), progress=False, **kw)


def _key(root):
    ensemble = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii", labels="binary")
    return files_key(ensemble.sel(case=["other"]))


@pytest.mark.parametrize("name", ["plain", "caf\u00e9", LATIN1, "50%", "%dc", "a\udcffb%25", "\ud800x"])
def test_escape_is_reversible(name):
    from qe_nb.pipeline.scores_file import escape_name, unescape_name

    escaped = escape_name(name)
    escaped.encode("utf-8")  # always encodable
    assert unescape_name(escaped) == name


def test_non_utf8_case_folder_is_scored_saved_and_restored(cohort, tmp_path):
    assert LATIN1 in os.listdir(cohort)
    scores = _score(cohort)
    assert LATIN1 in list(scores["case"].values)
    out = qe_nb.save_scores(scores, tmp_path / "s.nc")
    back = qe_nb.load_scores(out)
    assert list(back["case"].values) == list(scores["case"].values)
    np.testing.assert_array_equal(back["similarity"].values, scores["similarity"].values)
    assert back["case"].attrs.get("name_escape") is None  # restored, not left escaped


def test_non_utf8_case_folder_with_cache_reruns(cohort, tmp_path):
    cache = tmp_path / "cache"
    first = _score(cohort, cache=cache)
    again = _score(cohort, cache=cache)
    np.testing.assert_array_equal(first["similarity"].values, again["similarity"].values)
    qe_nb.save_scores(again, tmp_path / "s.nc")


def test_files_key_notices_same_size_content_with_mtime_restored(cohort, tmp_path):
    cache = tmp_path / "cache"
    first = _score(cohort, cache=cache, cases=["other"])
    target = cohort / "other" / "b.nii"
    replacement = tmp_path / "replacement.nii"
    _write(_cube(2, 7), replacement)  # as 'a': the Dice against the fusion changes
    before = os.stat(target)
    data = replacement.read_bytes()  # uncompressed, same shape: the same size
    assert len(data) == before.st_size
    key_before = _key(cohort)
    time.sleep(0.01)
    with open(target, "r+b") as fh:
        fh.write(data)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    key_after = _key(cohort)
    assert key_after != key_before
    fresh = _score(cohort, cases=["other"])
    cached = _score(cohort, cache=cache, cases=["other"])
    np.testing.assert_array_equal(cached["similarity"].values, fresh["similarity"].values)
    assert not np.array_equal(first["similarity"].values, fresh["similarity"].values)


def test_files_key_notices_a_file_swapped_by_rename(cohort, tmp_path):
    """`cp -p` to a new inode and rename over: same size and mtime, another inode."""
    target = cohort / "other" / "c.nii"
    def key():
        return _key(cohort)

    before = key()
    shutil.copy2(target, tmp_path / "copy.nii")
    os.replace(tmp_path / "copy.nii", target)
    assert key() != before
    assert key() == key()  # stable while nothing changes


def test_load_scores_refuses_a_variable_without_its_coordinate(cohort, tmp_path):
    scores = _score(cohort)
    good = qe_nb.save_scores(scores, tmp_path / "good.nc")
    ds = qe_nb.load_scores(good)
    broken = ds.assign(similarity=ds["similarity"].rename(metric="m"))
    path = qe_nb.save_scores(broken, tmp_path / "broken.nc")
    with pytest.raises(InputError, match=r"broken\.nc.*`similarity`.*\('case', 'algorithm', 'label', 'metric'\)"):
        qe_nb.load_scores(path)


def test_load_scores_refuses_quality_without_metric(tmp_path, cohort):
    for case in ("plain", "other"):
        _write(_cube(2, 7), cohort / case / "reference.nii")
    shutil.rmtree(os.fsencode(cohort) + b"/lat\xe9n")
    ds = _score(cohort, reference="{case}/reference.nii")
    broken = ds.drop_vars("quality").assign(quality=ds["quality"].rename(metric="m"))
    path = qe_nb.save_scores(broken, tmp_path / "q.nc")
    with pytest.raises(InputError, match=r"q\.nc.*`quality` has dims \('case', 'label', 'm'\); expected "
                                         r"\('case', 'label', 'metric'\)"):
        qe_nb.load_scores(path)


def test_load_scores_refuses_a_dim_without_ids(cohort, tmp_path):
    ds = _score(cohort)
    path = qe_nb.save_scores(ds.drop_vars(["metric", "higher_is_better", "units"]), tmp_path / "n.nc")
    with pytest.raises(InputError, match=r"n\.nc.*'metric' dim has no coordinate"):
        qe_nb.load_scores(path)
