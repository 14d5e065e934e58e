"""Label schemes and the turn from a label map into boolean structure masks.

A *label scheme* names the structures of interest, each a set of raw label values:
BraTS' ``necrosis=1, edema=2, enhancing=4`` or the nested regions
``whole_tumor=[1, 2, 4], tumor_core=[1, 4], enhancing_tumor=[4]``. The empty set of values
stands for "every non-zero voxel" (the binary scheme).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from qe_nb.exceptions import InputError, LabelError

__all__ = [
    "LabelScheme",
    "BRATS",
    "BRATS_REGIONS",
    "BRATS_2023",
    "BRATS_2023_REGIONS",
    "BINARY",
    "SCHEMES",
    "resolve_labels",
    "infer_labels",
    "check_label_map",
    "structure_masks",
    "parse_label_values",
    "values_in",
]


@dataclass(frozen=True)
class LabelScheme:
    """Named structures, each a tuple of raw label values.

    Parameters
    ----------
    name : str
        A short name recorded in the scores' attrs (``"brats-regions"``, ``"custom"``).
    structures : mapping of str to tuple of int
        Structure name -> the label values that make it up. An empty tuple means every
        non-zero voxel.

    Examples
    --------
    >>> scheme = LabelScheme("custom", {"tumor": (1, 2)})
    >>> scheme.names
    ('tumor',)
    >>> scheme.describe()
    'tumor=[1, 2]'
    """

    name: str
    structures: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.structures:
            raise InputError(f"label scheme {self.name!r} names no structure.")
        clean = {}
        for key, values in self.structures.items():
            if not isinstance(key, str) or not key:
                raise InputError(f"label scheme {self.name!r}: structure names must be non-empty strings; got {key!r}.")
            clean[key] = _as_label_values(values, where=f"label scheme {self.name!r}, structure {key!r}")
        object.__setattr__(self, "structures", clean)

    @property
    def names(self) -> tuple[str, ...]:
        """The structure names, in order."""
        return tuple(self.structures)

    @property
    def values(self) -> tuple[int, ...]:
        """Every raw label value the scheme uses, sorted (empty for the binary scheme)."""
        return tuple(sorted({v for vs in self.structures.values() for v in vs}))

    def describe(self) -> str:
        """One line a person can read: ``'whole_tumor=[1, 2, 4], tumor_core=[1, 4]'``."""
        return ", ".join(
            f"{k}={list(v)}" if v else f"{k}=nonzero" for k, v in self.structures.items()
        )

    def values_text(self) -> list[str]:
        """Per structure, its label values as text (``'1,2,4'`` or ``'nonzero'``), for coords."""
        return [",".join(map(str, v)) if v else "nonzero" for v in self.structures.values()]


def _as_label_values(values: object, *, where: str) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InputError(f"{where}: label values must be an int or a list of ints; got {values!r}.")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise InputError(f"{where}: label values must be positive integers; got {v!r}.")
        out.append(int(v))
    return tuple(sorted(set(out)))


BRATS = LabelScheme("brats", {"necrosis": (1,), "edema": (2,), "enhancing": (4,)})
"""BraTS labels up to 2021: necrosis / non-enhancing core 1, edema 2, enhancing tumour 4."""

BRATS_REGIONS = LabelScheme(
    "brats-regions",
    {"whole_tumor": (1, 2, 4), "tumor_core": (1, 4), "enhancing_tumor": (4,)},
)
"""The nested BraTS evaluation regions (labels up to 2021)."""

BRATS_2023 = LabelScheme("brats2023", {"necrosis": (1,), "edema": (2,), "enhancing": (3,)})
"""BraTS 2023 labels: enhancing tumour is label 3."""

BRATS_2023_REGIONS = LabelScheme(
    "brats2023-regions",
    {"whole_tumor": (1, 2, 3), "tumor_core": (1, 3), "enhancing_tumor": (3,)},
)
"""The nested BraTS 2023 regions."""

BINARY = LabelScheme("binary", {"foreground": ()})
"""One structure: every non-zero voxel."""

SCHEMES: dict[str, LabelScheme] = {
    s.name: s for s in (BRATS, BRATS_REGIONS, BRATS_2023, BRATS_2023_REGIONS, BINARY)
}


def resolve_labels(labels: str | Mapping | LabelScheme) -> LabelScheme:
    """Turn a scheme name, a mapping or a :class:`LabelScheme` into a :class:`LabelScheme`.

    Parameters
    ----------
    labels : str, mapping or LabelScheme
        One of ``"brats"``, ``"brats-regions"``, ``"brats2023"``, ``"brats2023-regions"``,
        ``"binary"`` (underscores accepted), or a mapping structure name -> int or list of ints.

    Raises
    ------
    InputError
        For an unknown scheme name or a malformed mapping.

    Examples
    --------
    >>> resolve_labels("brats_regions").names
    ('whole_tumor', 'tumor_core', 'enhancing_tumor')
    >>> resolve_labels({"lesion": 1}).structures
    {'lesion': (1,)}
    """
    if isinstance(labels, LabelScheme):
        return labels
    if isinstance(labels, str):
        key = labels.strip().lower().replace("_", "-")
        if key not in SCHEMES:
            raise InputError(
                f"Unknown label scheme {labels!r}; expected one of {sorted(SCHEMES)} "
                "or a mapping structure name -> label value(s)."
            )
        return SCHEMES[key]
    if isinstance(labels, Mapping):
        return LabelScheme("custom", dict(labels))
    raise InputError(
        f"`labels` must be a scheme name, a mapping name -> int or list of ints, or a "
        f"LabelScheme; got {type(labels).__name__}."
    )


def infer_labels(values: Iterable[int]) -> LabelScheme:
    """Guess a label scheme from the label values seen in a cohort's files.

    ``{1, 2, 4}`` (or a subset holding 4) gives the BraTS regions; ``{1, 2, 3}`` with 3 the
    BraTS 2023 regions; one value gives the binary scheme; anything else one structure per
    value (``label_1``, ``label_2``, ...).

    Examples
    --------
    >>> infer_labels([0, 1, 2, 4]).name
    'brats-regions'
    >>> infer_labels([0, 1]).name
    'binary'
    >>> infer_labels([0, 1, 5]).describe()
    'label_1=[1], label_5=[5]'
    """
    seen = sorted({int(v) for v in values} - {0})
    if not seen or len(seen) == 1:
        return BINARY
    if set(seen) <= {1, 2, 4} and 4 in seen:
        return BRATS_REGIONS
    if set(seen) <= {1, 2, 3} and 3 in seen and len(seen) == 3:
        return BRATS_2023_REGIONS
    return LabelScheme("inferred", {f"label_{v}": (v,) for v in seen})


def values_in(label_map: np.ndarray) -> np.ndarray:
    """The distinct values of a checked (non-negative integer) label map, sorted.

    A histogram (one pass) when the values are small, as label values are; ``np.unique``
    (a sort) otherwise.

    Examples
    --------
    >>> values_in(np.array([[4, 0], [2, 4]], np.uint8))
    array([0, 2, 4])
    """
    top = int(label_map.max()) if label_map.size else 0
    if top < 65536:
        return np.flatnonzero(np.bincount(label_map.ravel(), minlength=top + 1))
    return np.unique(label_map)




def parse_label_values(text: str) -> tuple[int, ...]:
    """Parse a structure's label values written as text: ``"1,2,4"`` or ``"nonzero"``.

    The inverse of :meth:`LabelScheme.values_text` (the ``label_values`` coordinate of an
    ensemble or a scores cube).

    Parameters
    ----------
    text : str
        Comma-separated positive integers (spaces allowed), or ``"nonzero"`` for every
        non-zero voxel.

    Returns
    -------
    tuple of int
        Sorted, distinct; ``()`` for ``"nonzero"``.

    Raises
    ------
    InputError
        For anything else; the message shows the text.

    Examples
    --------
    >>> parse_label_values("1,2,4")
    (1, 2, 4)
    >>> parse_label_values("nonzero")
    ()
    """
    if not isinstance(text, str):
        raise InputError(
            f"label values must be text such as '1,2,4' or 'nonzero'; got {type(text).__name__} {text!r}."
        )
    clean = text.strip()
    if clean == "nonzero":
        return ()
    try:
        values = [int(part) for part in clean.split(",")]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise InputError(
            f"label values must be comma-separated positive integers such as '1,2,4', or "
            f"'nonzero'; got {text!r}."
        )
    return tuple(sorted(set(values)))


LARGEST_LABEL = 2**53
"""Float voxels above this are not whole numbers a label map can hold exactly (and would wrap
around when cast to int64)."""


def check_label_map(label_map: np.ndarray, *, name: str = "label_map") -> np.ndarray:
    """Return ``label_map`` as a non-negative integer array, or raise :class:`LabelError`.

    Floats are accepted when they hold integral values (real BraTS outputs are often
    stored as float32).

    Examples
    --------
    >>> check_label_map(np.array([0.0, 2.0, 4.0])).dtype
    dtype('uint8')
    >>> check_label_map(np.array([0.5]))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.LabelError: `label_map` holds non-integral values (e.g. 0.5); a label map must hold whole numbers.
    >>> check_label_map(np.array([1e30]))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.LabelError: `label_map` holds values too large to be labels (e.g. 1e+30); a label map must hold whole numbers below 2**53.
    """
    arr = np.asarray(label_map)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise LabelError(f"`{name}` holds NaN or infinite voxels; a label map must hold whole numbers.")
        huge = np.abs(arr) > LARGEST_LABEL
        if huge.any():
            raise LabelError(
                f"`{name}` holds values too large to be labels (e.g. {arr[huge].flat[0]:g}); "
                "a label map must hold whole numbers below 2**53."
            )
        frac = arr != np.floor(arr)
        if frac.any():
            raise LabelError(
                f"`{name}` holds non-integral values (e.g. {arr[frac].flat[0]:g}); "
                "a label map must hold whole numbers."
            )
        if arr.size and arr.min() < 0:
            raise LabelError(f"`{name}` holds negative labels (e.g. {arr.min():g}); labels must be >= 0.")
        top = arr.max() if arr.size else 0
        return arr.astype(np.uint8 if top < 256 else np.int64)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise LabelError(f"`{name}` holds negative labels (e.g. {arr.min()}); labels must be >= 0.")
        return arr
    raise LabelError(f"`{name}` must be an integer (or integral float) array; got dtype {arr.dtype}.")


def structure_masks(label_map: np.ndarray, labels: str | Mapping | LabelScheme) -> np.ndarray:
    """Boolean masks of every structure of a scheme, stacked on a leading axis.

    Parameters
    ----------
    label_map : ndarray of int
        A label map (any shape).
    labels : str, mapping or LabelScheme
        The scheme (see :func:`resolve_labels`).

    Returns
    -------
    ndarray of bool, shape ``(n_structures, *label_map.shape)``

    Examples
    --------
    >>> m = np.array([0, 1, 2, 4])
    >>> structure_masks(m, "brats-regions").astype(int)
    array([[0, 1, 1, 1],
           [0, 1, 0, 1],
           [0, 0, 0, 1]])
    """
    scheme = resolve_labels(labels)
    arr = check_label_map(label_map)
    out = np.empty((len(scheme.structures),) + arr.shape, dtype=bool)
    for i, values in enumerate(scheme.structures.values()):
        # Plain comparisons vectorise best (a lookup table or np.take is several times slower).
        if not values:
            np.not_equal(arr, 0, out=out[i])
        elif len(values) <= 4:
            np.equal(arr, values[0], out=out[i])
            for v in values[1:]:
                out[i] |= arr == v
        else:
            out[i] = np.isin(arr, values)
    return out
