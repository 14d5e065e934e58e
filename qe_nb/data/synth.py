"""Synthetic cohorts with ground truth: glioma-like (BraTS labels, MR), lung-lesion-like (CT)
and 2-D cell microscopy annotated by a crowd (PNG, :mod:`qe_nb.data.synth_cells`).

:func:`synthetic_cohort` writes a folder of image files that looks like a real ensemble run:
per case a ground-truth label map, one candidate segmentation per algorithm and the images,
then opens it with :func:`qe_nb.data.ensemble.open_ensemble`.

How the candidates fail
-----------------------
Every algorithm has a *skill* and every case a *difficulty*. A candidate is the reference's
smooth level-set fields plus

- a *shared* error (the same for every algorithm of the case, grows with difficulty): the
  ensemble agrees and is wrong together, so the fusion is wrong and no alarm can see it;
- an *individual* error (grows with difficulty and falls with skill): boundary over- and
  under-segmentation by a few voxels with smooth random boundary noise;
- discrete failures, more frequent in hard cases and weak algorithms: a missed structure
  (enhancing tumour or the whole core; a lung lesion), necrosis <-> enhancing confusion, a
  false-positive blob far from the lesion, an output shifted by several voxels, edema bleeding
  into healthy tissue, a shrunken output, and (rarely) an empty output.

In hard cases some failures hit a random subset of the algorithms together -- often a
majority, so the fusion inherits them while the others disagree. That is what makes
disagreement predict failure (Kofler et al. 2021) without making the prediction perfect.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qe_nb.data.images import write_image
from qe_nb.data.synth_cases import glioma_case, lung_case
from qe_nb.data.synth_cells import FOREGROUND, cells_case
from qe_nb.exceptions import EnsembleError, InputError
from qe_nb.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["synthetic_cohort", "GLIOMA_ALGORITHMS", "LUNG_ALGORITHMS", "KINDS"]

KINDS = ("glioma", "lung", "cells")
GLIOMA_ALGORITHMS = ("unet-a", "nnunet-b", "deepmedic-c", "cascade-d", "hybrid-e")
"""Names of the first five synthetic glioma algorithms (more are called ``model-06``, ...)."""
LUNG_ALGORITHMS = ("ADA", "RAN", "AUG", "BASE")
"""The paper's CT ensemble (ADA, RAN, AUG) and its baseline; more are ``model-05``, ..."""

_DEFAULT_SHAPE = {"glioma": (96, 112, 96), "lung": (48, 160, 192), "cells": (256, 256)}
_MODALITIES = {"glioma": ("t1", "t1c", "t2", "flair"), "lung": ("ct",), "cells": ("phase",)}
_LABELS = {"glioma": "brats-regions", "lung": "binary", "cells": "binary"}
_LABEL_VALUES = {"glioma": {"necrosis": 1, "edema": 2, "enhancing": 4}, "lung": {"lesion": 1},
                 "cells": {"cell": FOREGROUND}}
_SUFFIX = {"glioma": ".nii.gz", "lung": ".nii.gz", "cells": ".png"}
_MIN_SIDE = 16
_MIN_SIDE_2D = 32
_MARKER = "cohort.json"
_GENERATOR = "qe_nb.synth.synthetic_cohort"
MASKS = "{case}/{algorithm}.nii.gz"
REFERENCE = "{case}/reference.nii.gz"
IMAGES = "{case}/images/{modality}.nii.gz"


def _layout(kind: str) -> tuple[str, str, str]:
    """The (masks, reference, images) patterns of a kind: NIfTI volumes, or PNG for cells."""
    suffix = _SUFFIX[kind]
    return tuple(p.replace(".nii.gz", suffix) for p in (MASKS, REFERENCE, IMAGES))  # type: ignore[return-value]


# --------------------------------------------------------------------------- public API


def synthetic_cohort(
    path: str | os.PathLike,
    *,
    kind: str = "glioma",
    n_cases: int = 68,
    n_algorithms: int = 5,
    shape: tuple[int, ...] | None = None,
    seed: int = 0,
    images: bool = True,
    progress: bool | Callable[[int, int], None] = False,
    overwrite: bool = False,
) -> xr.Dataset:
    """Write a synthetic ensemble cohort with ground truth as image files and open it.

    Parameters
    ----------
    path : str or path-like
        The folder to write (created if missing). It must be empty, or hold a previous
        synthetic cohort (its ``cohort.json``), whose case folders are replaced.
    kind : {"glioma", "lung", "cells"}, default "glioma"
        ``"glioma"``: BraTS labels (necrosis 1, edema 2, enhancing 4) in a brain-like
        ellipsoid at 1 mm, images t1, t1c, t2, flair. ``"lung"``: 2-8 lesions (label 1) in
        two lung-like ellipsoids, anisotropic CT spacing (z 2.5-5 mm, x/y 0.7-0.9 mm per
        case), image ct (Hounsfield units). ``"cells"``: 2-D PNG masks (0 / 255, no
        spacing: distances in pixels) of 15-40 small cells per image drawn by crowd-like
        annotators ``worker-01``, ... who miss, merge, loosely outline, shift and invent
        objects (:mod:`qe_nb.data.synth_cells`); image ``phase`` (uint8 PNG).
    n_cases : int, default 68
        Number of cases, named ``case-000``, ``case-001``, ...
    n_algorithms : int, default 5
        Ensemble size (at least 2). Glioma names: ``unet-a``, ``nnunet-b``, ...;
        lung names: the paper's ``ADA``, ``RAN``, ``AUG``, then ``BASE``, ...
    shape : tuple of 3 int (2 for cells), optional
        The grid (z, y, x) of every case; default (96, 112, 96) for glioma and
        (48, 160, 192) for lung, at least 16 voxels per axis; for cells the image size
        (y, x), default (256, 256), at least 32 pixels per axis.
    seed : int, default 0
        Seed of the random generator: the same seed writes the same voxels. Case ``i`` depends
        only on ``seed``, ``i``, ``kind``, ``n_algorithms`` and ``shape``.
    images : bool, default True
        Write the images (int16) too; masks (uint8) are always written.
    progress : bool or callable, default False
        ``True`` shows a tqdm bar; a callable is called as ``progress(done, total)`` after
        every case.
    overwrite : bool, default False
        Write into a non-empty folder that is not a synthetic cohort (files of the same name
        are replaced, other files are left alone).

    Returns
    -------
    xarray.Dataset
        The catalogue of :func:`qe_nb.data.ensemble.open_ensemble` over ``case`` x ``algorithm``,
        with ``reference`` and (when ``images``) ``image`` paths; label scheme
        ``"brats-regions"`` (glioma) or ``"binary"`` (lung).

    Raises
    ------
    InputError
        For an unknown ``kind``, ``n_cases < 1``, ``n_algorithms < 2``, a malformed
        ``shape`` or ``seed``, or a ``path`` that is a file.
    EnsembleError
        When ``path`` is a non-empty folder that holds no synthetic cohort and ``overwrite``
        is False.

    Notes
    -----
    Layout: ``{case}/{algorithm}.nii.gz`` (candidates), ``{case}/reference.nii.gz`` (ground
    truth), ``{case}/images/{modality}.nii.gz`` (``.png`` for cells), and ``cohort.json`` (parameters, algorithm
    skills, per-case difficulty and the failures injected into every candidate) plus a
    ``README.md``. The generator is tuned so that, at the default sizes, the majority-vote
    fusion's Dice with the ground truth spreads like the paper's (most cases 0.6-0.95 and a
    tail towards 0) and the alarm count at alpha = 0.1 correlates with it at about
    r = -0.6 to -0.8 (paper: -0.72 for MR, -0.70 for CT).

    References
    ----------
    Kofler F. et al. (2021), "Robust, Primitive, and Unsupervised Quality Estimation for
    Segmentation Ensembles", Front. Neurosci. 15:752780.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "tiny"
    >>> ens = synthetic_cohort(folder, kind="lung", n_cases=2, n_algorithms=3,
    ...                        shape=(16, 32, 32), seed=1, images=False)
    >>> dict(ens.sizes)
    {'case': 2, 'algorithm': 3, 'label': 1}
    >>> list(ens["algorithm"].values)
    ['ADA', 'AUG', 'RAN']
    >>> sorted(p.name for p in (folder / "case-000").iterdir())
    ['ADA.nii.gz', 'AUG.nii.gz', 'RAN.nii.gz', 'reference.nii.gz']
    """
    params = _write_cohort(
        path,
        kind=kind,
        n_cases=n_cases,
        n_algorithms=n_algorithms,
        shape=shape,
        seed=seed,
        images=images,
        progress=progress,
        overwrite=overwrite,
    )
    from qe_nb.data.ensemble import open_ensemble

    masks, reference, image_pattern = _layout(params["kind"])
    return open_ensemble(
        Path(path),
        masks=masks,
        reference=reference,
        images=image_pattern if images else None,
        labels=params["labels"],
    )


# --------------------------------------------------------------------------- validation


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _check_arguments(kind, n_cases, n_algorithms, shape, seed) -> tuple[str, int, int, tuple, int]:
    if kind not in KINDS:
        raise InputError(f"Unknown `kind` {kind!r}; expected one of {list(KINDS)}.")
    n_cases = _check_int(n_cases, "n_cases", 1)
    n_algorithms = _check_int(n_algorithms, "n_algorithms", 2)
    seed = _check_int(seed, "seed", 0)
    if shape is None:
        shape = _DEFAULT_SHAPE[kind]
    if kind == "cells":
        try:
            flat = len(shape) == 2 and all(
                not isinstance(s, bool) and isinstance(s, (int, np.integer)) for s in shape
            )
        except TypeError:
            flat = False
        if not flat or min(shape) < _MIN_SIDE_2D:
            raise InputError(
                f"`shape` must be 2 positive integers (y, x) for kind='cells', each >= "
                f"{_MIN_SIDE_2D}; got {shape!r}."
            )
        return kind, n_cases, n_algorithms, tuple(int(s) for s in shape), seed
    try:
        ok = len(shape) == 3 and all(
            not isinstance(s, bool) and isinstance(s, (int, np.integer)) for s in shape
        )
    except TypeError:
        ok = False
    if not ok or min(shape) < _MIN_SIDE:
        raise InputError(
            f"`shape` must be 3 positive integers (z, y, x), each >= {_MIN_SIDE}; got {shape!r}."
        )
    return kind, n_cases, n_algorithms, tuple(int(s) for s in shape), seed


def _algorithm_names(kind: str, n: int) -> list[str]:
    if kind == "cells":
        return [f"worker-{i + 1:02d}" for i in range(n)]
    base = GLIOMA_ALGORITHMS if kind == "glioma" else LUNG_ALGORITHMS
    return [base[i] if i < len(base) else f"model-{i + 1:02d}" for i in range(n)]


def _prepare_folder(root: Path, *, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise InputError(f"`path` {str(root)!r} is a file; expected a folder to write the cohort into.")
    if not root.exists():
        root.mkdir(parents=True)
        return
    entries = list(root.iterdir())
    if not entries:
        return
    marker = root / _MARKER
    previous = None
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = None
    if not (isinstance(previous, dict) and previous.get("generator") == _GENERATOR):
        if overwrite:
            return
        raise EnsembleError(
            f"`path` {str(root)!r} is not empty ({len(entries)} entries) and holds no synthetic "
            f"cohort ({_MARKER}); choose an empty or new folder, or pass `overwrite=True`."
        )
    # A previous synthetic cohort: remove its case folders so no stale case survives.
    for case in previous.get("cases", []):
        name = case.get("case") if isinstance(case, dict) else None
        if isinstance(name, str) and name.startswith("case-") and "/" not in name and "\\" not in name:
            shutil.rmtree(root / name, ignore_errors=True)


# --------------------------------------------------------------------------- writing


def _write_cohort(
    path: str | os.PathLike,
    *,
    kind: str = "glioma",
    n_cases: int = 68,
    n_algorithms: int = 5,
    shape: tuple[int, ...] | None = None,
    seed: int = 0,
    images: bool = True,
    progress: bool | Callable[[int, int], None] = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Validate, generate and write the files; return the parameters written to cohort.json."""
    kind, n_cases, n_algorithms, shape, seed = _check_arguments(
        kind, n_cases, n_algorithms, shape, seed
    )
    root = Path(path)
    _prepare_folder(root, overwrite=bool(overwrite))

    names = _algorithm_names(kind, n_algorithms)
    skill, cases_iter = _generate(kind, n_cases, n_algorithms, shape, seed, images=images)

    cases = []
    with progress_bar(total=n_cases, desc=f"synthetic {kind} cohort", disable=progress is not True) as bar:
        for i, case in enumerate(cases_iter):
            cases.append(_write_case(root / f"case-{i:03d}", case, names, images=images,
                                     suffix=_SUFFIX[kind]))
            bar.update(1)
            if callable(progress):
                progress(i + 1, n_cases)

    from qe_nb import __version__

    params = {
        "generator": _GENERATOR,
        "qe_nb_version": __version__,
        "kind": kind,
        "n_cases": n_cases,
        "n_algorithms": n_algorithms,
        "shape": list(shape),
        "seed": seed,
        "images": bool(images),
        "labels": _LABELS[kind],
        "label_values": _LABEL_VALUES[kind],
        "modalities": list(_MODALITIES[kind]) if images else [],
        "layout": dict(zip(("masks", "reference", "images"),
                           (*_layout(kind)[:2], _layout(kind)[2] if images else None))),
        "algorithms": names,
        "skill": {n: round(float(s), 4) for n, s in zip(names, skill)},
        "cases": cases,
    }
    (root / _MARKER).write_text(json.dumps(params, indent=1) + "\n")
    (root / "README.md").write_text(_readme(params))
    return params


def _write_case(folder: Path, case: dict[str, Any], names: list[str], *, images: bool,
                suffix: str = ".nii.gz") -> dict[str, Any]:
    """Write one generated case into ``folder``; return its record for cohort.json."""
    (folder / "images" if images else folder).mkdir(parents=True, exist_ok=True)

    def write(arr: np.ndarray, file: Path) -> None:
        if suffix == ".nii.gz":
            _write_nifti(arr, file, spacing=case["spacing"], origin=case["origin"])
        else:  # a 2-D picture: no spacing to keep
            write_image(arr, file)

    write(case["reference"], folder / f"reference{suffix}")
    for name, cand in zip(names, case["candidates"]):
        write(cand, folder / f"{name}{suffix}")
    for modality, arr in case.get("images", {}).items():
        write(arr, folder / "images" / f"{modality}{suffix}")
    record = {
        "case": folder.name,
        "difficulty": round(float(case["difficulty"]), 4),
        "spacing": [round(float(s), 4) for s in case["spacing"]],
        "failures": {n: f for n, f in zip(names, case["failures"])},
    }
    if "n_objects" in case:
        record["n_objects"] = int(case["n_objects"])
    return record


def _generate(kind: str, n_cases: int, n_algorithms: int, shape, seed: int, *, images: bool):
    """The algorithms' skills and an iterator over the generated cases (dicts of arrays).

    Case ``i`` is drawn from its own generator seeded by (seed, kind, n_algorithms, shape, i),
    so it does not depend on how many cases are generated.
    """
    kind_key = KINDS.index(kind)
    algo_rng = np.random.default_rng([seed, kind_key, n_algorithms, 1_000_003])
    skill = np.sort(algo_rng.uniform(0.55, 0.95, n_algorithms))[::-1]
    algo_rng.shuffle(skill)
    bias = algo_rng.normal(0.0, 0.5, n_algorithms)
    make = {"glioma": glioma_case, "lung": lung_case, "cells": cells_case}[kind]

    def cases():
        for i in range(n_cases):
            rng = np.random.default_rng([seed, kind_key, n_algorithms, *shape, i])
            yield make(rng, shape, skill, bias, images=images)

    return skill, cases()


def _write_nifti(arr: np.ndarray, file: Path, *, spacing, origin) -> None:
    """Write a (z, y, x) array as ``.nii.gz``: SimpleITK writes the NIfTI, Python gzips it.

    SimpleITK's NIfTI writer ignores ``compressionLevel`` (it always deflates at the default
    level, ~0.1-0.3 s per noisy image); gzip level 1 with a zero timestamp is several times
    faster and byte-reproducible.
    """
    import gzip

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin[::-1]))
    raw = file.with_name(file.name[: -len(".gz")] + ".tmp.nii")
    try:
        sitk.WriteImage(img, str(raw), False)
        data = raw.read_bytes()
    finally:
        raw.unlink(missing_ok=True)
    with open(file, "wb") as fh, gzip.GzipFile(
        filename="", mode="wb", compresslevel=1, fileobj=fh, mtime=0
    ) as gz:
        gz.write(data)


def _readme(p: dict[str, Any]) -> str:
    return (
        f"# Synthetic {p['kind']} cohort (qe_nb)\n\n"
        f"Written by `qe_nb.synthetic_cohort(kind={p['kind']!r}, n_cases={p['n_cases']}, "
        f"n_algorithms={p['n_algorithms']}, shape={tuple(p['shape'])}, seed={p['seed']}, "
        f"images={p['images']})`, qe_nb {p['qe_nb_version']}. Not patient data.\n\n"
        f"- candidates: `{p['layout']['masks']}` (uint8), algorithms {', '.join(p['algorithms'])}\n"
        f"- ground truth: `{p['layout']['reference']}` (uint8), labels {p['label_values']}\n"
        + (f"- images: `{p['layout']['images']}` (int16), modalities {', '.join(p['modalities'])}\n"
           if p["images"] else "")
        + "\n`cohort.json` holds the parameters, every algorithm's skill, every case's difficulty "
        "and spacing, and the failures injected into each candidate.\n"
        "Open it with `qe_nb.open_ensemble(folder, masks=..., reference=..., images=..., "
        f"labels={p['labels']!r})`.\n"
    )
