"""Figures to PNG bytes, fast enough for a widget that redraws on every slider move.

- :func:`figure_png` -- one Agg draw encoded by Pillow; for Figure 4 (drawn by
  :func:`qe_nb.ui.figures.alarm_count_vs_quality`) it can keep the static background per
  axis ranges and draw only the artists that change;
- :class:`BlitLayer` -- a figure rendered once, with a few marker artists drawn on a copy of
  that rendering per state (the chosen α on the sweep figure);
- :func:`encode_png` -- an RGB array as PNG (Pillow, zlib's fastest level).

Nothing here changes what a figure shows: a blitted PNG equals a full draw pixel for pixel.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from qe_nb.exceptions import InputError

__all__ = ["FIGURE4_STATE", "BACKGROUNDS", "figure_png", "encode_png", "BlitLayer"]

FIGURE4_STATE = "_qe_nb_figure4"
"""The attribute of a Figure-4 figure holding the artists an update rewrites (per panel:
axes, points, mean bars, title, note, kind)."""

BACKGROUNDS = "_qe_nb_backgrounds"
"""The attribute of a figure holding the Agg backgrounds :func:`figure_png` keeps, by ranges."""

MAX_BACKGROUNDS = 8
"""Backgrounds kept per figure (least recently used dropped first)."""

PNG_COMPRESS_LEVEL = 1
"""zlib level of the PNGs: figures (flat colours, thin lines) gain little from more effort,
and an app's PNG is shown once and thrown away."""


def _agg_canvas(fig: Figure) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)


def _check_dpi(dpi: Any) -> float:
    if (isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating))
            or not np.isfinite(dpi) or dpi <= 0):
        raise InputError(f"`dpi` must be a positive number; got {dpi!r}.")
    return float(dpi)


def figure_png(fig: Figure, *, dpi: float = 72.0, reuse_background: bool = False) -> bytes:
    """The figure as PNG bytes, rendered with Agg directly: for apps that redraw often.

    Cheaper than ``fig.savefig(buffer, format="png")``: one Agg draw, no bounding-box or
    face-colour handling, and the rows compressed at zlib's fastest level.

    Parameters
    ----------
    fig : Figure
        Any figure; its dpi is ``dpi`` while it is drawn and restored afterwards.
    dpi : float, default 72
        Resolution; the image is ``fig.get_size_inches() * dpi`` pixels.
    reuse_background : bool, default False
        For a figure drawn by :func:`qe_nb.ui.figures.alarm_count_vs_quality` and updated by
        :func:`qe_nb.ui.figures.update_alarm_count_vs_quality` only: render everything but the points, the
        mean bars, the legends and the titles once per x-axis and y-axis range and reuse
        that background, drawing only those artists on top (most of the cost of a full
        draw is laying out and rasterising the tick labels, which do not change while the
        largest alarm count stays the same). Only while the figure has no active layout
        engine (``fig.set_layout_engine("none")`` after a first layout), because the layout
        must not move when the titles are left out; changes made to the figure in other ways
        are not seen while a background for the same ranges is cached. Ignored otherwise.

    Returns
    -------
    bytes
        An RGB PNG.

    Raises
    ------
    InputError
        For anything but a Figure, or a ``dpi`` that is not a positive number.

    Notes
    -----
    With ``reuse_background`` the dynamic artists are drawn in the order of a full draw
    (points, spines, mean bars, legend, titles), so the two pictures agree pixel for pixel.

    Examples
    --------
    >>> from qe_nb.ui.figures import alarm_count_vs_quality
    >>> fig = alarm_count_vs_quality([0, 1, 2, 2], [0.9, 0.8, 0.5, 0.6])
    >>> figure_png(fig, dpi=50)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    if not isinstance(fig, Figure):
        raise InputError(f"`fig` must be a matplotlib Figure; got {type(fig).__name__}.")
    dpi = _check_dpi(dpi)
    canvas = _agg_canvas(fig)
    old_dpi = fig.dpi
    if old_dpi != dpi:
        fig.set_dpi(dpi)
    try:
        state = getattr(fig, FIGURE4_STATE, None) if reuse_background else None
        engine = fig.get_layout_engine()
        frozen = engine is None or isinstance(engine, PlaceHolderLayoutEngine)
        if (state and frozen and len(fig.axes) == len(state)
                and all(a["ax"] in fig.axes for a in state)):
            _blit_figure4(fig, canvas, state)
        else:
            canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
    finally:
        if old_dpi != dpi:
            fig.set_dpi(old_dpi)
    return encode_png(rgba[..., :3])


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of a (height, width, 3) uint8 array, encoded by Pillow.

    Examples
    --------
    >>> encode_png(np.zeros((2, 3, 3), np.uint8))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _blit_figure4(fig: Figure, canvas: Any, state: list[dict[str, Any]]) -> None:
    """Restore (or render once) the background for the current ranges, draw the rest on it."""
    key = (
        float(fig.dpi),
        tuple(fig.bbox.bounds),
        tuple(
            (tuple(a["ax"].get_position().bounds), a["ax"].get_xlim(), a["ax"].get_ylim(),
             tuple(a["ax"].get_xticks().tolist()),
             a["note"].get_text() if a.get("note") is not None else "")
            for a in state
        ),
    )
    cache = getattr(fig, BACKGROUNDS, None)
    if cache is None:
        cache = {}
        setattr(fig, BACKGROUNDS, cache)
    # in the order of a full draw (zorder): points 2, spines 2.5 (the distance axis clips
    # points at its top), mean bars 3, legend 5, then the title
    dynamic = [(a["ax"], artist) for a in state
               for artist in (a["points"], *a["ax"].spines.values(), a["means"],
                              a["ax"].get_legend(), a["title"])
               if artist is not None]
    background = cache.pop(key, None)
    if background is None:
        # Titles are emptied rather than hidden: Axes.draw would move a hidden title off
        # the figure (its empty extent seems to overlap the axes).
        visible = [artist.get_visible() for _, artist in dynamic]
        titles = [a["title"].get_text() for a in state]
        for _, artist in dynamic:
            if not any(artist is a["title"] for a in state):
                artist.set_visible(False)
        for a in state:
            a["title"].set_text("")
        try:
            canvas.draw()
        finally:
            for (_, artist), was in zip(dynamic, visible, strict=True):
                artist.set_visible(was)
            for a, text in zip(state, titles, strict=True):
                a["title"].set_text(text)
        background = canvas.copy_from_bbox(fig.bbox)
        if len(cache) >= MAX_BACKGROUNDS:
            cache.pop(next(iter(cache)))
    else:
        canvas.restore_region(background)
    cache[key] = background  # most recently used last
    for ax, artist in dynamic:
        ax.draw_artist(artist)



class BlitLayer:
    """A figure rendered once, with a few artists drawn over a copy of it on every call.

    For a figure whose only changing part is a marker (the chosen α on the sweep figure):
    the rest is rasterised once, and :meth:`png` restores that raster and draws the markers
    as they are now (moved, shown or hidden by the caller), with Agg, on top.

    Parameters
    ----------
    fig : Figure
        The figure, complete but for the state of ``artists``; its layout must not change
        afterwards (the raster is not redrawn).
    artists : sequence of Artist
        Artists of ``fig``'s axes that change between calls; left out of the raster.
    dpi : float, default 72
        Resolution; the figure keeps it.

    Examples
    --------
    >>> fig = Figure(figsize=(2, 2))
    >>> ax = fig.add_subplot()
    >>> line = ax.axvline(0.2)
    >>> layer = BlitLayer(fig, [line], dpi=40)
    >>> line.set_xdata([0.7, 0.7])
    >>> layer.png() != BlitLayer(fig, [], dpi=40).png()
    True
    """

    def __init__(self, fig: Figure, artists: Sequence[Artist], *, dpi: float = 72.0) -> None:
        if not isinstance(fig, Figure):
            raise InputError(f"`fig` must be a matplotlib Figure; got {type(fig).__name__}.")
        dpi = _check_dpi(dpi)
        if fig.dpi != dpi:
            fig.set_dpi(dpi)
        self.figure = fig
        self.artists = list(artists)
        self._canvas = _agg_canvas(fig)
        shown = [artist.get_visible() for artist in self.artists]
        for artist in self.artists:
            artist.set_visible(False)
        try:
            self._canvas.draw()
        finally:
            for artist, was in zip(self.artists, shown, strict=True):
                artist.set_visible(was)
        self._background = self._canvas.copy_from_bbox(fig.bbox)

    def png(self) -> bytes:
        """The raster with the artists drawn on it as they are now, as PNG bytes."""
        self._canvas.restore_region(self._background)
        for artist in self.artists:
            if artist.get_visible():
                artist.axes.draw_artist(artist)
        return encode_png(np.asarray(self._canvas.buffer_rgba())[..., :3])
