"""Rules for 2-D picture formats (PNG, TIFF, BMP, JPEG): units, colour channels, lossy masks.

SimpleITK reads these formats; what it gives back needs three decisions that volumes never
needed, all taken here and applied by :func:`qe_nb.data.images.read_image`:

Units
    PNG, BMP and JPEG carry at most a *print* density (pHYs, DPI: 72 or 300 "dots per inch"
    set by an image editor), never the size of a pixel in the sample, so they are read with
    spacing ``(1.0, 1.0)`` and ``units="px"``: distances come out in pixels, whatever
    SimpleITK makes of the density. A TIFF's resolution tags (ResolutionUnit inch or
    centimetre) are what microscopes and scanners write, so a TIFF keeps the spacing
    SimpleITK derives from them, in mm (rounded to float32 precision, the tags' own); a TIFF
    without them (SimpleITK then reports 1 x 1) is ``"px"``. 2-D NIfTI, NRRD and MHA store
    their spacing in mm, as volumes do.
Colour channels
    A mask stored as RGB or RGBA whose three colour channels are equal everywhere (a gray
    mask saved by a tool that writes colour; every BMP SimpleITK reads, a gray-palette PNG)
    is read as one channel. Its alpha channel is ignored when it is constant (fully opaque,
    usually); an alpha that varies would carry meaning and is refused, as are colour
    channels that differ: a mask holds label values, not colours. An *image* (read for
    overlays) with differing channels becomes its luminance (ITU-R BT.601:
    ``0.299 R + 0.587 G + 0.114 B``), its alpha dropped. Colour is only accepted in 2-D.
Lossy masks
    JPEG alters values near every edge (a 0/255 mask comes back with 3, 17, 252 ...), so a
    JPEG file is refused as a mask or reference before it is read; as an image it is fine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qe_nb.exceptions import ImageReadError

__all__ = [
    "PICTURE_SUFFIXES",
    "LUMINANCE_WEIGHTS",
    "picture_format",
    "picture_units",
    "refuse_lossy_mask",
    "one_channel",
]

PICTURE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
"""File name endings of the 2-D picture formats SimpleITK reads (any letter case)."""

LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B: how a colour *image* becomes one channel."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
)
_NO_SPACING = {"png", "jpeg", "bmp"}


def picture_format(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"tiff"`` or ``"bmp"`` from a file's first bytes; None otherwise.

    Examples
    --------
    >>> picture_format(b"\\x89PNG\\r\\n\\x1a\\n...."), picture_format(b"\\x1f\\x8b...")
    ('png', None)
    """
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def picture_units(fmt: str | None, spacing: tuple[float, ...]) -> tuple[str, tuple[float, ...] | None]:
    """The units of a file of format ``fmt`` and the spacing to use instead of SimpleITK's.

    Returns ``(units, spacing)``; ``spacing`` is None when SimpleITK's is kept as it is.

    Examples
    --------
    >>> picture_units("png", (0.5, 0.5))
    ('px', (1.0, 1.0))
    >>> picture_units("tiff", (0.3527777777777778, 0.3527777777777778))
    ('mm', (0.3527778, 0.3527778))
    >>> picture_units("tiff", (1.0000000150136, 1.0000000150136)), picture_units(None, (2.0, 1.0))
    (('px', (1.0, 1.0)), ('mm', None))
    """
    if fmt in _NO_SPACING:
        return "px", (1.0,) * len(spacing)
    if fmt == "tiff":
        # the tags are float32 (or rationals): digits beyond float32's precision are noise
        rounded = tuple(float(f"{s:.7g}") for s in spacing)
        if all(s == 1.0 for s in rounded[-2:]):
            return "px", (1.0,) * len(spacing)
        return "mm", rounded
    return "mm", None


def refuse_lossy_mask(fmt: str | None, path: str, prefix: str) -> None:
    """Raise when a mask or reference file is a JPEG (lossy); ``prefix`` names case and role.

    Raises
    ------
    ImageReadError
        For a JPEG file.
    """
    if fmt == "jpeg":
        raise ImageReadError(
            f"{prefix}cannot use {path!r} as a mask: it is a JPEG file, and JPEG compression is "
            "lossy (it alters the label values near every edge, e.g. 255 becomes 252 and 0 "
            "becomes 3); save the masks as PNG, TIFF or NIfTI. JPEG is fine for images shown "
            "under the outlines."
        )


def one_channel(
    array: np.ndarray, *, mask: bool, fail: Callable[[str], ImageReadError]
) -> np.ndarray:
    """One channel ``(y, x)`` from a 2-D RGB or RGBA array ``(y, x, 3 or 4)``.

    Equal colour channels give the first of them, in the file's pixel type; an alpha channel
    is dropped (for a mask only when it is constant). Differing colour channels are refused
    for a mask (``fail`` makes the error) and give the BT.601 luminance (float32) for an image.

    Examples
    --------
    >>> gray = np.zeros((2, 3, 3), np.uint8); gray[0, 0] = 255
    >>> one_channel(gray, mask=True, fail=ValueError).tolist()
    [[255, 0, 0], [0, 0, 0]]
    """
    n = array.shape[-1]
    if n not in (3, 4):
        raise fail(
            f"it has {n} components per pixel (size {array.shape[0]} x {array.shape[1]}); expected "
            "one channel (gray), RGB or RGBA"
        )
    red, green, blue = array[..., 0], array[..., 1], array[..., 2]
    equal = np.array_equal(red, green) and np.array_equal(red, blue)
    if mask:
        if not equal:
            differ = np.argwhere((red != green) | (red != blue))[0]
            y, x = (int(v) for v in differ)
            colour = tuple(int(v) for v in array[y, x, :3])
            raise fail(
                f"it is a colour ({'RGBA' if n == 4 else 'RGB'}) image whose channels differ "
                f"(pixel (y={y}, x={x}) is RGB {colour}); a mask must hold label values in one "
                "channel (or in three equal ones); save it as a grayscale (single-channel) image"
            )
        if n == 4:
            alpha = array[..., 3]
            low, high = int(alpha.min()), int(alpha.max())
            if low != high:
                raise fail(
                    f"its alpha (transparency) channel varies ({low} to {high}); a mask's alpha "
                    "must be constant (it is ignored), as transparency would hide label values; "
                    "save it without alpha"
                )
        return np.ascontiguousarray(red)
    if equal:
        return np.ascontiguousarray(red)
    weights = np.asarray(LUMINANCE_WEIGHTS, dtype=np.float32)
    return np.ascontiguousarray(array[..., :3].astype(np.float32) @ weights)
