"""Errors and warnings raised by qe_nb.

Every error is a :class:`QeNbError`, itself a :class:`ValueError`, so callers can catch
either. Messages name the argument, show what came in and say what was expected.
"""

from __future__ import annotations

__all__ = [
    "QeNbError",
    "InputError",
    "GeometryError",
    "LabelError",
    "ImageReadError",
    "ManifestError",
    "EnsembleError",
    "NoMatchingFilesError",
    "QeNbWarning",
    "UndefinedValueWarning",
    "UnreliableThresholdWarning",
    "LabelValueWarning",
]


class QeNbError(ValueError):
    """Base class of every error raised by qe_nb."""


class InputError(QeNbError):
    """An argument has the wrong type, dims, value or shape."""


class GeometryError(QeNbError):
    """Images of one case do not share a grid (shape, spacing, origin, direction)."""


class LabelError(QeNbError):
    """A label map or a label scheme is not usable (non-integral values, negative labels)."""


class ImageReadError(QeNbError):
    """A file could not be read as an image."""


class EnsembleError(QeNbError):
    """A folder or pattern does not describe a usable ensemble."""


class NoMatchingFilesError(EnsembleError):
    """No file of a folder matches a pattern (yet): an empty or still-filling folder, or a wrong pattern."""


class ManifestError(QeNbError):
    """``data_manifest.yml`` is malformed or a data set cannot be resolved or verified."""


class QeNbWarning(UserWarning):
    """Base class of qe_nb's warnings."""


class UndefinedValueWarning(QeNbWarning):
    """A value is undefined by the rules (e.g. Pearson r of a constant alarm count)."""


class UnreliableThresholdWarning(QeNbWarning):
    """Thresholds rest on too few cases or on a metric without spread (MAD 0)."""


class LabelValueWarning(QeNbWarning):
    """A label map holds values that no structure of the label scheme uses."""
