"""The triage app over a watched stream: the worklist of the assessments ``qe-nb watch`` recorded.

``qe-nb watch FOLDER --model MODEL.json --db qe-nb.db`` records one assessment per new case in a
:class:`qe_nb.ReviewStore`; ``qe-nb app --db qe-nb.db --model MODEL.json`` serves
:class:`StreamTriageApp` over them. The worklist holds each case's risk, reasons and alarms exactly
as the frozen model gave them when the case was assessed (:func:`qe_nb.stored_assessments`), so
there is no α to move: the α line says which model froze the thresholds. Verdicts go into the same
database, with the model's content hash; new assessments appear on the app's refresh (the button,
and every ``refresh`` seconds).

- :class:`StreamWorklist` -- the store's assessments of one model as a worklist table, no widgets;
- :class:`GrowingWorklistView` -- a worklist view whose rows fill up as cases arrive;
- :class:`StreamTriageApp` -- :class:`qe_nb.ui.triage_app.TriageApp` over a :class:`StreamWorklist`.

A case the watcher could not assess (its ``error``) is listed first, with every cell counted as an
alarm (as :func:`qe_nb.score` counts a missing member's NaN rows) and the error as its reasons.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.app_inputs import load_triage_inputs
from qe_nb.ui.review_session import ReviewSession
from qe_nb.ui.triage_app import TriageApp
from qe_nb.ui.triage_views import NotesView, WorklistView, when_text

__all__ = ["StreamWorklist", "GrowingWorklistView", "StreamTriageApp"]


class StreamWorklist:
    """The assessments a review store holds for one model, as the triage app's worklist.

    Parameters
    ----------
    store : qe_nb.ReviewStore
        The database ``qe-nb watch`` writes (``assessments(model_hash)``).
    model : QualityModel
        The frozen model the cases were assessed with; its content hash selects the rows.
    model_file : str or path-like, optional
        The model's file, for the α line (default: the model's hash).

    Attributes
    ----------
    assessments : xarray.Dataset
        :func:`qe_nb.stored_assessments` of the rows as last read (over ``case``, oldest first).
    table : pandas.DataFrame
        The worklist: index ``rank`` (1 = review first), columns ``case``, ``risk`` (the stored
        alarm count; every cell for a case recorded with an error), ``n_alarms:<metric>``,
        ``reasons``, ``percentile``, ``error``, ``assessed_at``; by risk, then case id.
    counts : xarray.DataArray
        ``risk`` over ``case`` (the table's risk, in the assessments' order).
    max_count : int
        Members x labels x metrics of the model.

    Raises
    ------
    InputError
        From :meth:`reload`, when the store holds no assessment for the model.
    """

    def __init__(self, store: Any, model: Any, *, model_file: str | os.PathLike | None = None) -> None:
        self.store = store
        self.model = model
        self.model_hash = str(model.content_hash)
        self.model_name = Path(os.fspath(model_file)).name if model_file is not None else \
            f"the model sha256 {self.model_hash[:12]}"
        sizes = model.thresholds.sizes
        self.max_count = int(sizes["algorithm"] * sizes["label"] * sizes["metric"])
        self._n_rows = -1
        self.reload()

    @property
    def alpha(self) -> float:
        """The model's α (NaN when it varies per group: see :attr:`alpha_text`)."""
        alpha = self.model.alpha
        return math.nan if isinstance(alpha, xr.DataArray) else float(alpha)

    @property
    def alpha_text(self) -> str:
        """``thresholds frozen by model.json (α = 0.5, fitted on 20 cases)``."""
        alpha = self.model.alpha
        if isinstance(alpha, xr.DataArray):
            values = ", ".join(f"{float(v):g}" for v in np.unique(alpha.values))
            shown = f"α per {', '.join(self.model.by)}: {values}"
        else:
            shown = f"α = {float(alpha):g}"
        return (f"thresholds frozen by {self.model_name} ({shown}, fitted on "
                f"{int(self.model.reference.attrs['n_cases'])} cases)")

    @property
    def similarity(self) -> xr.DataArray:
        """The assessed cases' similarity (case, algorithm, label, metric)."""
        return self.assessments["similarity"]

    @property
    def alarms(self) -> xr.DataArray:
        """The assessed cases' alarms as the model gave them (case, algorithm, label, metric)."""
        return self.assessments["alarms"]

    @property
    def summary(self) -> str:
        """One line: cases, alarms, cases with an alarm, failed cases, the last assessment's time."""
        table = self.table
        failed = int((table["error"] != "").sum())
        ok = table[table["error"] == ""]
        parts = [f"{len(table)} watched case(s)", f"{int(ok['risk'].sum())} alarms",
                 f"{int((ok['risk'] > 0).sum())} of {len(ok)} assessed cases with ≥ 1 alarm"]
        if failed:
            parts.append(f"{failed} could not be assessed")
        parts.append(f"last assessed {when_text(table['assessed_at'].max())}")
        return " · ".join(parts)

    def reload(self) -> bool:
        """Read the model's assessments from the store; True when there are new ones.

        Raises
        ------
        InputError
            When the store holds no assessment for the model (the last read is kept otherwise).
        StoreError
            When the database cannot be read.
        """
        from qe_nb.pipeline.watch import stored_assessments

        if self._n_rows > 0 and len(self.store.assessed_cases(self.model_hash)) == self._n_rows:
            return False  # one row per case and model, never changed: nothing new (and no results read)
        rows = self.store.assessments(self.model_hash)
        if len(rows) == 0:
            raise InputError(f"the review database {str(self.store.url)!r} holds no assessment for "
                             f"{self.model_name} (sha256 {self.model_hash[:12]}); run `qe-nb watch FOLDER "
                             "--model MODEL.json --db DB` first, with this model and database.")
        self.assessments = stored_assessments(rows, self.model)
        self.table, self.counts = self._table(self.assessments, rows["assessed_at"])
        self._n_rows = len(rows)
        return True

    def _table(self, ds: xr.Dataset, assessed_at: pd.Series) -> tuple[pd.DataFrame, xr.DataArray]:
        error = np.array([str(e) for e in ds["error"].values], dtype=object)
        failed = error != ""
        stored = np.nan_to_num(ds["risk"].values.astype(float), nan=0.0)
        risk = np.where(failed, self.max_count, stored).astype(np.int64)
        reasons = [f"not assessed: {e}" if e else str(r) for r, e in zip(ds["reasons"].values, error)]
        frame = pd.DataFrame({"case": [str(c) for c in ds["case"].values], "risk": risk})
        for metric in ds["metric"].values:
            frame[f"n_alarms:{metric}"] = ds["alarms"].sel(metric=metric).sum(("algorithm", "label")).values
        frame["reasons"] = reasons
        frame["percentile"] = ds["percentile"].values
        frame["error"] = error.astype(str)
        frame["assessed_at"] = pd.to_datetime(assessed_at.to_numpy(), utc=True)
        frame = frame.sort_values(["risk", "case"], ascending=[False, True], kind="mergesort")
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        counts = xr.DataArray(risk, dims="case", coords={"case": ds["case"].values}, name="risk")
        return frame, counts


class GrowingWorklistView(WorklistView):
    """A :class:`~qe_nb.ui.triage_views.WorklistView` of up to ``n_rows`` rows that shows only as
    many as the worklist has cases (the rest hidden until cases arrive)."""

    def __init__(self, n_rows: int, *, max_count: int, on_select: Callable[[str], None]) -> None:
        super().__init__(n_rows, max_count=max_count, on_select=on_select)
        self._all_rows = (list(self.row_buttons), list(self.row_infos))

    def draw(self, table: pd.DataFrame, current: Mapping[str, Mapping[str, Any]], *, selected: str | None,
             quality_name: str | None, opened: Mapping[str, tuple[str, Any]] | None = None) -> None:
        """Fill the first ``len(table)`` rows (see the parent's ``draw``) and hide the others."""
        buttons, infos = self._all_rows
        shown = min(len(table), len(buttons))
        self.row_buttons, self.row_infos = buttons[:shown], infos[:shown]
        for i, row in enumerate(self.box.children):
            row.layout.display = None if i < shown else "none"
        super().draw(table, current, selected=selected, quality_name=quality_name, opened=opened)


class _ModelStampedStore:
    """The review store, with the model's content hash recorded with each verdict."""

    def __init__(self, store: Any, model_hash: str) -> None:
        self._store, self._model_hash = store, model_hash

    def record(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("model", self._model_hash)
        return self._store.record(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class StreamTriageApp(TriageApp):
    """The triage app over the assessments ``qe-nb watch`` recorded for one model.

    Parameters
    ----------
    store : qe_nb.ReviewStore or str or path-like
        The database the watcher writes (a SQLite file or a URL); verdicts go there too.
    model : QualityModel or str or path-like
        The frozen model (or its file, read with :func:`qe_nb.load_model`).
    model_file : str or path-like, optional
        The model's file, named in the α line (default: ``model`` when it is a path).
    ensemble : xarray.Dataset, optional
        The watched folder's catalogue (:func:`qe_nb.open_ensemble`); enables the case viewer.
    catalogue : callable, optional
        Reads the catalogue again (for a case that arrived after ``ensemble`` was read).
    reviewer, refresh, rows, fusion, dpi
        As for :class:`~qe_nb.ui.triage_app.TriageApp`; ``fusion`` defaults to the model's.

    Attributes
    ----------
    stream : StreamWorklist
        The assessments as last read; :attr:`worklist` is its ``table`` plus the verdicts.

    Raises
    ------
    InputError
        When the database holds no assessment for the model, or for a bad ``rows`` or ``ensemble``.
    QeNbError
        When the model file cannot be read.
    StoreError
        When the database cannot be opened.
    """

    worklist_view_type = GrowingWorklistView

    def __init__(self, store: Any, model: Any, *, model_file: str | os.PathLike | None = None,
                 ensemble: xr.Dataset | None = None, catalogue: Callable[[], xr.Dataset] | None = None,
                 reviewer: str = "", refresh: float = 15.0, rows: int = 30, fusion: str | None = None,
                 dpi: float = 72) -> None:
        from qe_nb.pipeline.model import load_model
        from qe_nb.store.review import ReviewStore

        if isinstance(model, (str, os.PathLike)):
            model_file = model if model_file is None else model_file
            model = load_model(model)
        self.store = store if isinstance(store, ReviewStore) else ReviewStore(store)
        self.model, self.imported, self._catalogue = model, 0, catalogue
        self.stream = StreamWorklist(self.store, model, model_file=model_file)
        self.pool = str(model.pool)
        inputs = load_triage_inputs(self._scores(), ensemble=ensemble, rows=rows, label_mean=False,
                                    quality_metric="dice")
        self.scores, self.scores_path, self.ensemble = inputs.scores, None, inputs.ensemble
        self.similarity, self.quality = self.stream.similarity, None
        self.fusion = fusion or str(model.fusion)
        self._dpi = dpi
        self.session = ReviewSession(_ModelStampedStore(self.store, self.stream.model_hash), reviewer=reviewer)
        self.notes_view = NotesView()
        self.notes, self.notes_html = self.notes_view.notes, self.notes_view.html
        self.calibration_objective = "frozen"
        self.calibrated_alpha = self.run_alpha = self.stream.alpha
        self.alpha_source = self.stream.alpha_text
        self._build(self.alpha if math.isfinite(self.alpha) else 0.0, rows, refresh)
        for widget in (self.alpha_slider, self.alpha_readout, self.preset_button):
            widget.layout.display = "none"  # nothing to move: the thresholds are the model's
        self.alpha_slider.disabled = self.preset_button.disabled = True
        self.desk.refresh_button.on_click(lambda _: self.reload_assessments())

    def _scores(self) -> xr.Dataset:
        return xr.Dataset({"similarity": self.stream.similarity}, attrs={"fusion": str(self.model.fusion)})

    @property
    def alpha(self) -> float:
        """The model's α (NaN when it varies per group); fixed."""
        return self.stream.alpha

    def set_alpha(self, alpha: float) -> None:
        """Refused: the thresholds are frozen by the model.

        Raises
        ------
        InputError
            Always.
        """
        raise InputError(f"the worklist's {self.stream.alpha_text}; α cannot be changed here (fit another model "
                         "with `qe-nb fit` and watch with it).")

    def reload_assessments(self) -> None:
        """Read the new assessments from the database and redraw (a red line when they cannot be read)."""
        try:
            changed = self.stream.reload()
        except Exception as exc:  # the last read stays on screen
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.verdict_panel.problem(f"could not read the assessments: {text}")
            return
        if changed:
            from qe_nb.ui.triage_views import header_html

            self.scores = self._scores()
            self.similarity = self.stream.similarity
            self.header.value = self.header.value.split("<h2", 1)[0] + header_html(
                self.similarity, self.store.url, pool=self.pool)
            if self.viewer is not None:
                self._freeze_viewer()
            self.refresh()

    def reload(self) -> None:
        """Read the new assessments, every reviewer's verdicts and who has which case open; redraw."""
        self.reload_assessments()
        super().reload()

    def select(self, case: str) -> None:
        """Open ``case`` (reading the watched folder again when it arrived after the catalogue was read)."""
        if self.ensemble is not None and self._catalogue is not None and \
                case not in [str(c) for c in self.ensemble["case"].values]:
            self.ensemble, self.viewer = self._catalogue(), None
        if self.viewer is not None:
            self._freeze_viewer()
        fresh = self.viewer is None
        super().select(case)
        if fresh and self.viewer is not None:
            self._freeze_viewer()
            self.viewer.redraw()
            self.viewer.scores_view.draw(case)

    def _freeze_viewer(self) -> None:
        """The case viewer's scores and alarms: the stored ones, at the model's thresholds."""
        view = self.viewer.scores_view
        view.scores, view.alpha, view.alarms = self.scores, self.model.alpha, self.stream.alarms

    def refresh(self) -> None:
        """Redraw the worklist from the assessments as last read (:attr:`stream`)."""
        self.worklist, self._counts = self.stream.table.copy(), self.stream.counts
        self.summary.value = html.escape(self.stream.summary)
        self._draw()
