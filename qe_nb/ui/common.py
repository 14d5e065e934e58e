"""Shared parts of the ipywidgets apps: the ipywidgets import, number checks, HTML tables,
showing a PNG or HTML in an Output widget, and the display protocol.

Panels are filled by assigning ``out.outputs`` one display-data dict (one message to the
front end), never with ``with out:`` while a notebook cell runs, which can hang Voila.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError

__all__ = [
    "INSTALL_HINT",
    "TABLE_CSS",
    "ipywidgets",
    "check_number",
    "format_value",
    "html_table",
    "as_frame",
    "figure_png_at",
    "show_png",
    "show_html",
    "freeze_layout",
    "alpha_text",
    "WidgetApp",
]

INSTALL_HINT = 'pip install "qe-nb[notebook]"'
"""How to install what the apps need (ipywidgets, matplotlib)."""

TABLE_CSS = """<style>
.qe-table {border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums}
.qe-table th, .qe-table td {padding: 2px 6px; border-bottom: 1px solid #ddd; text-align: right}
.qe-table th {background: #f4f4f4}
.qe-table tr.qe-current td {background: #f6dcea; font-weight: bold}
.qe-table td.qe-alarm {background: #f9d3b8; color: #7a2e00; font-weight: bold}
</style>"""
"""The style of :func:`html_table`'s tables (current row, alarm cells)."""


def ipywidgets() -> Any:
    """The ipywidgets module, or an ImportError with the install hint."""
    try:
        import ipywidgets as module
    except ImportError as exc:  # pragma: no cover - exercised with a monkeypatched import
        raise ImportError(
            f"the qe_nb apps need ipywidgets (and matplotlib); install them with {INSTALL_HINT}"
        ) from exc
    return module


def check_number(value: Any, name: str) -> float:
    """``value`` as a float; an InputError naming ``name`` unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"`{name}` must be a finite number; got {value!r}.")
    if not np.isfinite(value):
        raise InputError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)


def format_value(value: Any, digits: int = 3) -> str:
    """A table cell: yes/no, whole numbers, ``digits`` decimals, NaN, ±∞, escaped text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.{digits}f}"
    return html.escape(str(value))


def html_table(
    frame: pd.DataFrame,
    *,
    css_class: str = "",
    current_rows: Sequence[int] = (),
    cell_classes: np.ndarray | None = None,
    index: bool = True,
    digits: int = 3,
) -> str:
    """A small HTML table, cheaper than ``DataFrame.to_html`` and with row / cell classes."""
    names = [str(n) for n in frame.index.names] if index else []
    head = "".join(f"<th>{html.escape(n if n != 'None' else '')}</th>" for n in names)
    head += "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    current = set(current_rows)
    values = frame.to_numpy(dtype=object)
    keys = list(frame.index)
    for i in range(len(frame)):
        key = keys[i] if isinstance(keys[i], tuple) else (keys[i],)
        cells = "".join(f"<th>{format_value(k)}</th>" for k in key) if index else ""
        for j, v in enumerate(values[i]):
            cls = cell_classes[i, j] if cell_classes is not None else ""
            cells += f'<td class="{cls}">{format_value(v, digits)}</td>' if cls else f"<td>{format_value(v, digits)}</td>"
        rows.append(f'<tr class="qe-current">{cells}</tr>' if i in current else f"<tr>{cells}</tr>")
    return (f'<table class="qe-table {css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def as_frame(value: Any) -> pd.DataFrame:
    """A table of whatever a core function returned (DataFrame, Series, Dataset, mapping)."""
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame()
    if isinstance(value, xr.Dataset):
        if not value.dims:
            return pd.DataFrame({k: [v.item()] for k, v in value.data_vars.items()})
        return value.to_dataframe()
    if isinstance(value, xr.DataArray):
        return value.to_dataframe(name=value.name or "value") if value.dims else pd.DataFrame(
            {value.name or "value": [value.item()]})
    if isinstance(value, Mapping):
        return pd.DataFrame({"value": list(value.values())}, index=pd.Index(list(value), name=""))
    if hasattr(value, "_asdict"):
        return as_frame(value._asdict())
    if hasattr(value, "__dict__"):
        return as_frame(vars(value))
    return pd.DataFrame({"value": [value]})


def figure_png_at(fig: Any, dpi: float, *, reuse_background: bool = False) -> bytes:
    """PNG of an app's figure (:func:`qe_nb.ui.render.figure_png`); the figure keeps ``dpi``.

    Switching the dpi back and forth would make Agg a new renderer, and matplotlib lay out
    every text again, on each redraw.
    """
    from qe_nb.ui.render import figure_png

    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    return figure_png(fig, dpi=dpi, reuse_background=reuse_background)


def show_png(out: Any, png: bytes) -> None:
    """Show a PNG in an Output widget: one assignment, one message to the front end.

    The same output that ``append_display_data(IPython.display.Image(png))`` makes, without
    clearing first (a second message) or going through IPython's formatters.
    """
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": base64.b64encode(png).decode("ascii"),
                             "text/plain": "<IPython.core.display.Image object>"}},)


def show_html(out: Any, text: str) -> None:
    """Show HTML in an Output widget, like :func:`show_png` (one assignment)."""
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"text/html": text,
                             "text/plain": "<IPython.core.display.HTML object>"}},)


def freeze_layout(fig: Any, layouts: dict[str, list], key: str, *, fresh: bool = False) -> None:
    """Reuse the first constrained layout of a figure that is redrawn with the same axes.

    The plots are rebuilt into the same figure on every change; solving the constrained
    layout again each time costs about a third of a redraw, and the axes do not move.
    ``fresh`` solves it again (a figure rebuilt for a new selection, whose titles may differ).
    """
    positions = layouts.get(key)
    if not fresh and positions is not None and len(positions) == len(fig.axes):
        for ax, position in zip(fig.axes, positions, strict=True):
            ax.set_position(position)
        return
    fig.set_layout_engine("constrained")
    fig.draw_without_rendering()
    layouts[key] = [ax.get_position() for ax in fig.axes]
    fig.set_layout_engine("none")



def alpha_text(alpha: float | xr.DataArray) -> str:
    """α for a caption: ``0.10``, or ``per label, 0.10…0.60`` for a per-group α."""
    if isinstance(alpha, xr.DataArray):
        return f"per {', '.join(map(str, alpha.dims))}, {float(alpha.min()):.2f}…{float(alpha.max()):.2f}"
    return f"{float(alpha):.2f}"


def static_snapshot(widget: Any) -> str:
    """The widget tree as static HTML: its HTML and labels, slider values, and the PNGs, HTML
    and text of its Output widgets (every tab included), for notebooks exported without a
    kernel (nbconvert, GitHub), where the live widgets cannot render."""
    parts = ["<p><i>A static snapshot of the app (run the notebook for the live version).</i></p>"]

    def walk(w: Any) -> None:
        kind = type(w).__name__
        if kind == "Output":
            for out in w.outputs:
                data = out.get("data", {})
                if "image/png" in data:
                    parts.append(f'<img src="data:image/png;base64,{data["image/png"]}" style="max-width:100%">')
                elif "text/html" in data:
                    parts.append(str(data["text/html"]))
                elif out.get("output_type") == "stream":
                    parts.append(f"<pre>{html.escape(str(out.get('text', '')))}</pre>")
        elif kind in ("HTML", "HTMLMath"):
            parts.append(str(w.value))
        elif kind == "Label":
            parts.append(f"<p>{html.escape(str(w.value))}</p>")
        elif kind.endswith("Slider") and not kind.endswith("RangeSlider"):
            parts.append(f"<p>{html.escape(str(w.description))} = {html.escape(format(w.value, 'g'))}</p>")
        for child in getattr(w, "children", ()):
            walk(child)

    walk(widget)
    return "<div class='qe-static-snapshot'>" + "".join(parts) + "</div>"


class WidgetApp:
    """Displays as its ``widget`` (an ipywidgets box) in a notebook and in Voila; a notebook
    exported without a kernel shows :func:`static_snapshot` instead (the bundle's text/html)."""

    widget: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            data, metadata = bundle
            return {**data, "text/html": static_snapshot(self.widget)}, metadata
        if isinstance(bundle, dict):
            return {**bundle, "text/html": static_snapshot(self.widget)}
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        display(data, metadata=metadata, raw=True)
