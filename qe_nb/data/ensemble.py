"""The catalogue of an ensemble: which file holds which candidate.

:func:`open_ensemble` walks a folder once and returns an ``xarray.Dataset`` over
``case`` x ``algorithm`` holding file *paths* (never voxels), so it stays small for
100 000 cases. :func:`~qe_nb.data.loading.load_case`, ``load_label_maps``, ``load_reference``
and ``load_images`` (in :mod:`qe_nb.data.loading`, importable from here too) then read the
voxels of one case at a time.

File-name patterns
------------------
A pattern is a path relative to ``root`` with placeholders ``{case}``, ``{algorithm}`` and
``{modality}``; it may contain sub-folders. Examples::

    "{case}/{algorithm}.nii.gz"           case folders (BraTS Toolkit, qe_nb's synthetic cohorts)
    "{algorithm}/{case}.nii.gz"           one folder per algorithm (nnU-Net prediction folders)
    "{case}_{algorithm}.nii.gz"           flat
    "{case}/segmentation/{algorithm}"     any image suffix (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd,
                                          .png, .tif, .tiff, .bmp, .jpg, .jpeg; not .dcm)
    "{case}/{algorithm}.dcm"              DICOM SEG files (segment numbers as labels, on the source
                                          series' grid; needs ``qe-nb[dicom]``). Name the suffix:
                                          CT or MR slices beside the masks are not candidates.
    "{case}/crowd-{algorithm}.png"        2-D masks (PNG, TIFF, BMP; 0/255 masks are binary)

Rules, applied to the path relative to ``root`` with ``/`` separators:

- a placeholder matches one or more characters other than ``/``, as *few* as possible
  (the regex ``[^/]+?``), and everything else in the pattern matches literally; the whole
  path must match. In a flat pattern such as ``"{case}_{algorithm}.nii.gz"`` the first
  placeholder therefore stops at the first ``_``: ``BraTS_001_isen-20.nii.gz`` gives case
  ``"BraTS"`` and algorithm ``"001_isen-20"``. Choose a separator that does not occur in
  the case ids (or use sub-folders) to remove the ambiguity;
- a placeholder used twice must match the same text both times;
- when the file name of a pattern (its last part) has no ``.`` after its last
  placeholder, any image suffix is accepted and is not part of the id
  (``"{case}/{algorithm}"`` matches ``c1/unet.nii.gz`` as algorithm ``"unet"``, and
  ``"{case}/gt"`` matches ``c1/gt.nrrd``); two files that then map to the same id
  (``a.nii`` and ``a.nii.gz``) are an error;
- names starting with ``.`` (hidden files, temporary files of atomic writes, ``._*``
  resource forks, ``.ipynb_checkpoints``) are ignored, and so is every file no pattern
  matches;
- a file matched by the ``reference`` pattern, then by the ``images`` pattern, is never a
  candidate: ``"{case}/reference.nii.gz"`` beside ``"{case}/{algorithm}.nii.gz"`` is the
  reference, not an algorithm called ``"reference"``;
- only folders as deep as the deepest pattern are visited; symbolic links are followed;
- an ``images`` pattern without ``{modality}`` catalogues one modality named after its file
  name (``"{case}/image.png"`` -> ``"image"``, ``"{case}/t1.nii.gz"`` -> ``"t1"``).

Cases without images
--------------------
Images are for looking at, not for scoring, so a cohort where only some cases have them (BU-BIL:
8 of 47) opens as any other: ``image`` holds ``""`` for the cases without, scoring never reads
it, and ``load_images(ensemble, case, missing="skip")`` returns None for them (the default,
``missing="raise"``, names the case and the pattern).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.labels import LabelScheme, resolve_labels
from qe_nb.data.images import IMAGE_SUFFIXES, PICTURE_SUFFIXES
from qe_nb.data.label_inference import infer_cohort_labels
from qe_nb.data.loading import (
    ensemble_labels,
    load_case,
    load_images,
    load_label_maps,
    load_reference,
    read_label_maps,
    read_reference,
)
from qe_nb.exceptions import EnsembleError, NoMatchingFilesError, QeNbWarning

__all__ = [
    "open_ensemble",
    "load_label_maps",
    "load_case",
    "load_reference",
    "load_images",
    "ensemble_labels",
]

# The loaders moved to qe_nb.data.loading; the scoring pipeline still imports the private names.
_read_label_maps = read_label_maps  # alias until callers switch
_read_reference = read_reference  # alias until callers switch

logger = logging.getLogger("qe_nb")

_REFERENCE_NAMES = {"reference", "ref", "ground_truth", "groundtruth", "gt", "seg", "label", "labels", "truth"}
"""Algorithm ids that are most likely a ground truth caught by the masks pattern."""

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN = ("case", "algorithm", "modality")
_ANY_SUFFIX = (*IMAGE_SUFFIXES, *PICTURE_SUFFIXES, *(s.upper() for s in PICTURE_SUFFIXES))
_SUFFIX_GROUP = "(?:" + "|".join(re.escape(s) for s in _ANY_SUFFIX) + ")"


def _one_modality(pattern: str) -> str:
    """The modality id of an ``images`` pattern without ``{modality}``: its file name without
    the suffix (``"{case}/image.png"`` -> ``"image"``), or ``"image"`` when that name holds a
    placeholder."""
    name = pattern.replace("\\", "/").rsplit("/", 1)[-1]
    if "{" in name:
        return "image"
    for suffix in sorted(_ANY_SUFFIX, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "image"
    return name.split(".", 1)[0] or "image"


# pattern argument -> (placeholders it needs, placeholders it must not have, example)
_PATTERN_RULES = {
    "masks": (("case", "algorithm"), ("modality",), "{case}/{algorithm}.nii.gz"),
    "reference": (("case",), ("algorithm", "modality"), "{case}/reference.nii.gz"),
    "images": (("case",), ("algorithm",), "{case}/images/{modality}.nii.gz"),
}


# --------------------------------------------------------------------------------------
# Patterns and the folder walk
# --------------------------------------------------------------------------------------


def _compile_pattern(pattern: object, argument: str) -> tuple[re.Pattern[str], int]:
    """Regex for one pattern argument, and how many path components it spans."""
    needs, forbidden, example = _PATTERN_RULES[argument]
    if not isinstance(pattern, str) or not pattern.strip():
        raise EnsembleError(
            f"`{argument}` must be a non-empty pattern string such as {example!r}; got {pattern!r}."
        )
    text = pattern.replace("\\", "/")
    parts = text.split("/")
    if text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise EnsembleError(
            f"`{argument}` pattern {pattern!r} must be a relative path below `root` without "
            f"empty, '.' or '..' parts, such as {example!r}."
        )
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise EnsembleError(f"`{argument}` pattern {pattern!r} has an unbalanced '{{' or '}}'.")
    names = _PLACEHOLDER.findall(text)
    unknown = sorted({n for n in names if n not in _KNOWN})
    if unknown:
        raise EnsembleError(
            f"`{argument}` pattern {pattern!r} uses unknown placeholder(s) "
            f"{['{' + n + '}' for n in unknown]}; expected only {{case}}, {{algorithm}}, "
            "{modality}."
        )
    missing = [n for n in needs if n not in names]
    if missing:
        raise EnsembleError(
            f"`{argument}` pattern {pattern!r} has no {{{missing[0]}}}; it needs "
            f"{' and '.join('{' + n + '}' for n in needs)}, e.g. {example!r}."
        )
    extra = [n for n in forbidden if n in names]
    if extra:
        raise EnsembleError(
            f"`{argument}` pattern {pattern!r} must not use {{{extra[0]}}}; it may use only "
            f"{' and '.join('{' + n + '}' for n in _KNOWN if n not in forbidden)}, e.g. {example!r}."
        )

    regex, seen, pos = [], set(), 0
    for m in _PLACEHOLDER.finditer(text):
        regex.append(re.escape(text[pos : m.start()]))
        name = m.group(1)
        regex.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+?)")
        seen.add(name)
        pos = m.end()
    tail = text[pos:]
    regex.append(re.escape(tail))
    if "." not in tail.rsplit("/", 1)[-1]:
        regex.append(_SUFFIX_GROUP)
    return re.compile("".join(regex), re.DOTALL), len(parts)


def _walk(root: str, max_depth: int) -> list[str]:
    """Relative paths (``/``-separated) of every non-folder entry down to ``max_depth``."""
    found: list[str] = []

    def visit(folder: str, prefix: str, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return  # an unreadable sub-folder holds nothing we can use
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if is_dir:
                if depth < max_depth:
                    visit(entry.path, rel + "/", depth + 1)
            else:
                found.append(rel)

    visit(root, "", 1)
    return found


def _no_match_error(argument: str, pattern: str, root: str, files: list[str], claimed: int) -> NoMatchingFilesError:
    if files:
        shown = ", ".join(repr(f) for f in files[:5])
        more = f" ({len(files)} files in all)" if len(files) > 5 else ""
        seen = f"files found there include {shown}{more}"
    else:
        seen = "the folder holds no files at that depth"
    note = (
        f"; {claimed} file(s) were taken by the reference/images patterns first"
        if claimed
        else ""
    )
    return NoMatchingFilesError(
        f"no file under {root!r} matches the `{argument}` pattern {pattern!r}; {seen}{note}. "
        "Check the pattern (placeholders {case}, {algorithm}, {modality}; sub-folders allowed)."
    )


def _duplicate_error(argument: str, pattern: str, key: tuple[str, ...], first: str, second: str) -> EnsembleError:
    names = ("case", "algorithm") if argument == "masks" else ("case", "modality")
    where = ", ".join(f"{n} {k!r}" for n, k in zip(names, key))
    return EnsembleError(
        f"two files map to {where} under the `{argument}` pattern {pattern!r}: {first!r} and "
        f"{second!r}; remove one or make the pattern more specific (e.g. end it with '.nii.gz')."
    )


# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------


def _infer_scheme(masks: np.ndarray, cases: list[str], algorithms: list[str]) -> LabelScheme:
    """Infer the scheme from candidates spread over the cohort; log it and warn once."""
    found = infer_cohort_labels(masks, cases, algorithms)
    logger.info("%s", found.log_text())
    warnings.warn(found.warning_text(), QeNbWarning, stacklevel=3)
    return found.scheme


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------


def open_ensemble(
    root: str | os.PathLike,
    *,
    masks: str = "{case}/{algorithm}.nii.gz",
    reference: str | None = None,
    images: str | None = None,
    labels: str | Mapping | LabelScheme | None = None,
) -> xr.Dataset:
    """Catalogue the candidate segmentations (and references, images) under a folder.

    Parameters
    ----------
    root : str or path-like
        The folder; patterns are relative to it.
    masks : str, default "{case}/{algorithm}.nii.gz"
        Pattern of the candidate label maps; needs ``{case}`` and ``{algorithm}``.
    reference : str, optional
        Pattern of the reference (ground truth) label map of a case; needs ``{case}``.
    images : str, optional
        Pattern of the images of a case; needs ``{case}``, and ``{modality}`` when a case has
        several (without it, one modality named after the file: ``"{case}/image.png"`` ->
        ``"image"``). Cases may lack images.
    labels : str, mapping or LabelScheme, optional
        The structures to evaluate (see :func:`qe_nb.core.labels.resolve_labels`). Default: inferred
        from every label value seen in the candidates of cases spread over the cohort -- the
        whole cohort when that is cheap (:mod:`qe_nb.data.label_inference`) -- with
        :func:`qe_nb.core.labels.infer_labels` (``{1, 2, 4}`` -> ``"brats-regions"``,
        ``{1, 2, 3}`` -> ``"brats2023-regions"``, one value -> ``"binary"``), announced by one
        :class:`~qe_nb.exceptions.QeNbWarning` (the values seen, the scheme chosen, the
        ``labels=`` hint), logged through the ``"qe_nb"`` logger and recorded as
        ``labels_inferred=1``.

    Returns
    -------
    xarray.Dataset
        Dims ``case``, ``algorithm`` (and ``modality``, ``label``). Data variables:

        - ``mask`` (case, algorithm): absolute path of every candidate, ``""`` where missing;
        - ``reference`` (case): only when ``reference`` is given; ``""`` where missing;
        - ``image`` (case, modality): only when ``images`` is given; ``""`` where missing.

        Coords ``case``, ``algorithm``, ``modality`` (sorted str), ``label`` (structure names)
        with the non-index coord ``label_values`` (``"1,2,4"`` or ``"nonzero"``). Attrs:
        ``root``, ``masks``, ``reference``, ``images`` (patterns, ``""`` when not given),
        ``label_scheme``, ``label_scheme_text``, ``labels_inferred`` (0 or 1).

    Raises
    ------
    EnsembleError
        Before any image is read: ``root`` is missing or not a folder; a pattern lacks a
        placeholder it needs, uses one it must not, or is absolute; a pattern matches no
        file (the message shows a few files that do exist); two files map to the same
        (case, algorithm) or (case, modality), e.g. ``a.nii`` and ``a.nii.gz``. Also when
        labels must be inferred and no candidate file tried can be read.

    Warns
    -----
    QeNbWarning
        Once, when the labels are inferred (``labels=None``): which values were seen in how
        many files and cases, which scheme was chosen, and how to choose another.
    InputError
        For an unknown label scheme.

    Notes
    -----
    The set of cases is the union of the cases seen by every pattern. A case with a
    reference (or images) but no candidate is kept with all-``""`` masks so that scoring can
    report it rather than silently drop it. See the module docstring for how patterns match.

    Examples
    --------
    >>> import tempfile, os
    >>> from qe_nb.data.images import write_image
    >>> root = tempfile.mkdtemp()
    >>> for case in ["c1", "c2"]:
    ...     os.mkdir(os.path.join(root, case))
    ...     for algorithm in ["unet", "vnet"]:
    ...         write_image(np.ones((2, 3, 4), np.uint8), os.path.join(root, case, f"{algorithm}.nii.gz"))
    >>> ens = open_ensemble(root, labels="binary")
    >>> dict(ens.sizes)
    {'case': 2, 'algorithm': 2, 'label': 1}
    >>> os.path.basename(str(ens["mask"].sel(case="c2", algorithm="vnet").values))
    'vnet.nii.gz'
    """
    root_text = os.fsdecode(os.fspath(root)) if isinstance(root, (str, bytes, os.PathLike)) else None
    if root_text is None:
        raise EnsembleError(f"`root` must be a folder path; got {type(root).__name__}.")
    root_abs = os.path.abspath(root_text)
    if not os.path.exists(root_abs):
        raise EnsembleError(f"`root` {root_text!r} does not exist; expected the folder that holds the cases.")
    if not os.path.isdir(root_abs):
        raise EnsembleError(f"`root` {root_text!r} is a file, not a folder.")

    compiled: dict[str, tuple[re.Pattern[str], int]] = {"masks": _compile_pattern(masks, "masks")}
    if reference is not None:
        compiled["reference"] = _compile_pattern(reference, "reference")
    if images is not None:
        compiled["images"] = _compile_pattern(images, "images")
    scheme = resolve_labels(labels) if labels is not None else None
    patterns = {"masks": masks, "reference": reference, "images": images}

    files = _walk(root_abs, max(depth for _, depth in compiled.values()))
    found: dict[str, dict[tuple[str, ...], str]] = {k: {} for k in compiled}
    claimed = 0
    for rel in files:
        for argument in ("reference", "images", "masks"):
            if argument not in compiled:
                continue
            m = compiled[argument][0].fullmatch(rel)
            if m is None:
                continue
            groups = m.groupdict()
            key = {
                "masks": (groups.get("case"), groups.get("algorithm")),
                "reference": (groups.get("case"),),
                "images": (groups.get("case"), groups.get("modality") or _one_modality(str(images))),
            }[argument]
            path = os.path.join(root_abs, *rel.split("/"))
            previous = found[argument].get(key)
            if previous is not None:
                if argument == "reference":
                    raise EnsembleError(
                        f"two files map to case {key[0]!r} under the `reference` pattern "
                        f"{reference!r}: {previous!r} and {path!r}; remove one or make the "
                        "pattern more specific (e.g. end it with '.nii.gz')."
                    )
                raise _duplicate_error(argument, patterns[argument], key, previous, path)
            found[argument][key] = path
            if argument != "masks":
                claimed += int(compiled["masks"][0].fullmatch(rel) is not None)
            break
    for argument in compiled:
        if not found[argument]:
            raise _no_match_error(
                argument, patterns[argument], root_abs, files, claimed if argument == "masks" else 0
            )

    cases = sorted(
        {k[0] for k in found["masks"]}
        | {k[0] for k in found.get("reference", {})}
        | {k[0] for k in found.get("images", {})}
    )
    algorithms = sorted({k[1] for k in found["masks"]})
    case_index = {c: i for i, c in enumerate(cases)}
    algorithm_index = {a: j for j, a in enumerate(algorithms)}

    mask = np.full((len(cases), len(algorithms)), "", dtype=object)
    for (case, algorithm), path in found["masks"].items():
        mask[case_index[case], algorithm_index[algorithm]] = path

    inferred = scheme is None
    if scheme is None:
        scheme = _infer_scheme(mask, cases, algorithms)

    data_vars: dict[str, Any] = {"mask": (("case", "algorithm"), mask)}
    coords: dict[str, Any] = {
        "case": np.array(cases, dtype=object),
        "algorithm": np.array(algorithms, dtype=object),
    }
    if "reference" in compiled:
        ref = np.full(len(cases), "", dtype=object)
        for (case,), path in found["reference"].items():
            ref[case_index[case]] = path
        data_vars["reference"] = (("case",), ref)
    if "images" in compiled:
        modalities = sorted({k[1] for k in found["images"]})
        modality_index = {m: j for j, m in enumerate(modalities)}
        image = np.full((len(cases), len(modalities)), "", dtype=object)
        for (case, modality), path in found["images"].items():
            image[case_index[case], modality_index[modality]] = path
        data_vars["image"] = (("case", "modality"), image)
        coords["modality"] = np.array(modalities, dtype=object)
    coords["label"] = np.array(scheme.names, dtype=object)
    coords["label_values"] = ("label", np.array(scheme.values_text(), dtype=object))
    if reference is None:
        suspects = sorted(a for a in algorithms if a.lower() in _REFERENCE_NAMES)
        if suspects:
            warnings.warn(
                f"the `masks` pattern {masks!r} takes {suspects} for algorithms; if "
                f"{'it is' if len(suspects) == 1 else 'they are'} the ground truth, pass "
                f"e.g. reference='{{case}}/{suspects[0]}.nii.gz' so it is scored as the reference "
                "instead of fused with the candidates.",
                QeNbWarning,
                stacklevel=2,
            )

    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "root": root_abs,
            "masks": masks,
            "reference": reference or "",
            "images": images or "",
            "label_scheme": scheme.name,
            "label_scheme_text": scheme.describe(),
            "labels_inferred": int(inferred),
        },
    )
