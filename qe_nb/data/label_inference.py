"""Inferring a cohort's label scheme from the label values of its candidate files.

:func:`infer_cohort_labels` is what :func:`qe_nb.data.ensemble.open_ensemble` does without
``labels=``: it reads the candidates of cases spread over the whole cohort (the first, the
last, the middle, the quarters, ...), collects every label value it sees, and turns them into
a scheme with :func:`qe_nb.core.labels.infer_labels` (``{1, 2, 4}`` -> the BraTS regions,
``{1, 2, 3}`` -> the BraTS 2023 regions, one value -> binary). It reads the whole cohort when
that is cheap (up to :data:`VOXEL_BUDGET` voxels in all: the 68-case demo cohort in well under
a second), otherwise cases in that spread order until the budget is used up (at least
:data:`MIN_CASES`). The caller warns once with what was seen and chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qe_nb.core.labels import LabelScheme, infer_labels, values_in
from qe_nb.data.loading import read_label_map
from qe_nb.exceptions import EnsembleError, ImageReadError, LabelError

__all__ = ["VOXEL_BUDGET", "MIN_CASES", "LabelInference", "spread_order", "infer_cohort_labels"]

VOXEL_BUDGET = 500_000_000
"""Voxels read at most to infer the labels (after :data:`MIN_CASES` cases): about 1 s of reading."""

MIN_CASES = 3
"""Cases read at least (when the cohort has them), whatever their size."""

MAX_FAILED_FILES = 10
"""Unreadable files tried before giving up when none could be read."""


@dataclass(frozen=True)
class LabelInference:
    """What :func:`infer_cohort_labels` saw and chose."""

    scheme: LabelScheme
    values: tuple[int, ...]  # the non-zero values seen
    n_files: int  # files read
    cases_read: tuple[str, ...]  # in the order read
    files_of_first: int  # files read of the first case read
    n_cases: int  # cases with at least one candidate

    @property
    def complete(self) -> bool:
        """Whether every case with candidates was read."""
        return len(self.cases_read) == self.n_cases

    def log_text(self) -> str:
        """One line for the ``qe_nb`` logger."""
        first = f"{self.files_of_first} file(s) of case {self.cases_read[0]!r}"
        others = len(self.cases_read) - 1
        if others:
            first += f" and {self.n_files - self.files_of_first} file(s) of {others} other case(s)"
        return (
            f"labels inferred from {first} (values {_short((0, *self.values))}): {self.scheme.name} "
            f"({_cut(self.scheme.describe())}); pass labels= to choose."
        )

    def warning_text(self) -> str:
        """The one warning :func:`~qe_nb.data.ensemble.open_ensemble` gives when it inferred."""
        where = (
            f"all {self.n_cases} case(s)"
            if self.complete
            else f"{len(self.cases_read)} of {self.n_cases} cases spread over the cohort"
        )
        return (
            f"no `labels=` given: label values {_short(self.values)} seen in {self.n_files} candidate "
            f"file(s) of {where}; using the scheme {self.scheme.name!r} ({_cut(self.scheme.describe())}). "
            "Pass `labels=` (CLI: `--labels`) to choose, e.g. 'brats-regions', 'brats', "
            "'brats2023-regions', 'binary' or a mapping such as {'lesion': [1, 2]}."
        )


def _short(values: tuple[int, ...], limit: int = 12) -> str:
    """A list of values, cut in the middle when long: ``[1, 2, ..., 1199] (1199 values)``."""
    if len(values) <= limit:
        return str(list(values))
    head = ", ".join(map(str, values[: limit - 2]))
    return f"[{head}, ..., {values[-1]}] ({len(values)} values)"


def _cut(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 5].rsplit(", ", 1)[0] + ", ..."


def spread_order(n: int) -> list[int]:
    """The indices ``0..n-1`` ordered so that every prefix is spread over the range.

    Examples
    --------
    >>> spread_order(9)
    [0, 8, 4, 2, 6, 1, 3, 5, 7]
    >>> sorted(spread_order(100)) == list(range(100))
    True
    """
    if n <= 0:
        return []
    order, seen = [0], {0}
    parts = 1
    while len(order) < n and parts <= 2 * n:
        for k in range(1, parts + 1, 2) if parts > 1 else (1,):
            i = round(k * (n - 1) / parts)
            if i not in seen:
                seen.add(i)
                order.append(i)
        parts *= 2
    order.extend(i for i in range(n) if i not in seen)
    return order


def infer_cohort_labels(
    masks: np.ndarray,
    cases: list[str],
    algorithms: list[str],
    *,
    voxel_budget: int = VOXEL_BUDGET,
    min_cases: int = MIN_CASES,
) -> LabelInference:
    """Infer the label scheme from the values of candidates spread over the cohort.

    Parameters
    ----------
    masks : ndarray of str, shape (case, algorithm)
        Candidate paths, ``""`` where missing (the catalogue's ``mask`` values).
    cases, algorithms : list of str
        The catalogue's ids, in the order of ``masks``.
    voxel_budget : int
        Stop reading after this many voxels (once ``min_cases`` cases are read).
    min_cases : int
        Cases read at least.

    Returns
    -------
    LabelInference

    Raises
    ------
    EnsembleError
        When no candidate file tried could be read as a label map.
    """
    with_files = [i for i in range(len(cases)) if any(masks[i])]
    values: set[int] = set()
    read: list[str] = []
    problems: list[str] = []
    n_files = voxels = tried = files_of_first = 0
    for position in spread_order(len(with_files)):
        if len(read) >= min_cases and voxels >= voxel_budget:
            break
        i = with_files[position]
        case, files_here = cases[i], 0
        for algorithm, path in zip(algorithms, masks[i]):
            if not path:
                continue
            if not values and tried >= MAX_FAILED_FILES:
                break
            tried += 1
            try:
                array, _ = read_label_map(path, case=case, role=f"algorithm {algorithm!r}")
            except (ImageReadError, LabelError) as exc:
                problems.append(str(exc))
                continue
            values.update(values_in(array).tolist())
            voxels += int(array.size)
            files_here += 1
        if files_here:
            read.append(case)
            n_files += files_here
            files_of_first = files_of_first or files_here
        if not values and tried >= MAX_FAILED_FILES:
            break
    if not read:
        first = f" The first problem: {problems[0]}" if problems else ""
        raise EnsembleError(
            f"cannot infer the label scheme: none of the {tried} candidate file(s) "
            f"tried could be read as a label map.{first} Pass `labels=` (e.g. 'brats-regions', "
            "'binary' or a mapping name -> label values)."
        )
    seen = tuple(sorted(values - {0}))
    return LabelInference(infer_labels(seen), seen, n_files, tuple(read), files_of_first, len(with_files))
