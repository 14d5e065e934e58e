"""Watch a folder and assess every new case once, when its files are complete (issue 16).

:class:`FolderWatcher` polls a folder that a segmentation pipeline fills with case folders, and
assesses each case with a frozen :class:`~qe_nb.QualityModel` as soon as its files are complete,
recording one row per case in a :class:`~qe_nb.ReviewStore` (SQLite in WAL mode by default; the
triage app can open the same database while the watcher writes). ``qe-nb watch`` runs it.

The rules
---------
- **Expected files.** For every member (algorithm) the model was fitted with, the file the
  ``masks`` pattern names for the case (``{case}/{algorithm}.nii.gz`` by default; any pattern of
  :func:`qe_nb.open_ensemble`). Other files (references, images, files of algorithms the model
  does not know, hidden temporary files such as ``.x.nii.gz.part``) are ignored.
- **Complete.** Every expected file exists and none of their (size, modification time in ns,
  inode) has changed for ``settle`` seconds, as seen by the watcher's own scans: file clocks of
  other machines are never trusted. A writer that renames finished files into place is settled
  one ``settle`` after the last rename; a slow writer must not pause longer than ``settle``.
  With ``missing_after``, a case whose present files have not changed for that long is assessed
  without the members still missing (their rows are NaN and alarm, as in :func:`qe_nb.score`).
- **Once.** Cases already in the store for the model's content hash are skipped (read at the
  start and again whenever some case is ready, so cases another watcher recorded are not
  assessed); each case is assessed in this process, one at a time, and recorded in one
  transaction. The store keeps one row per (case, model hash) (a UNIQUE constraint), so a watcher
  killed at any instant and started again assesses the cases it had not recorded and none
  twice; two watchers on one database never record a case twice either.
- **Changed while assessed.** The files are checked again after the assessment; a case whose
  files changed meanwhile is not recorded and waits to settle again.
- **Errors.** A case whose files cannot be used (unreadable, another grid, ...) is recorded like
  any other, with its ``error`` and no risk, and is not retried by this model, even when its
  files change later: an error row is an answer, and retrying would assess the case twice. To
  assess it again, fix the files and assess it with ``model.assess`` (or ``qe-nb assess``).
- **Stopping.** :meth:`FolderWatcher.run` returns when its ``stop`` event is set (``qe-nb watch``
  sets it on SIGTERM and Ctrl-C) after the case in progress is recorded; ``once=True`` assesses
  what is complete, waiting one ``settle`` to see which cases are still changing, and returns.

Each look at the folder is one :func:`qe_nb.open_ensemble` walk plus a ``stat`` of the expected
files of the cases not yet assessed (about 0.12 s for 2000 case folders of three files here).

Each recorded row holds ``risk`` (the model's risk of the case), ``alarms`` (the number of
alarming member x structure x metric cells), ``reasons`` (the worklist's words), ``error`` and a
``result`` dict: ``percentile`` (the risk's percentile in the reference cohort), ``similarity``
and ``alarm`` ({algorithm: {label: {metric: value}}}; a NaN similarity is ``None``, an infinite
one the string ``"inf"``), ``missing`` (members without a file), ``warnings`` (what the scoring
warned, e.g. label values the scheme does not use) and ``files`` ({algorithm: [path relative to
the folder, size, mtime_ns]}). :func:`stored_assessments` turns the rows back into
``model.assess``'s Dataset, so ``model.drift`` runs on the database alone.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.data.ensemble import open_ensemble
from qe_nb.exceptions import EnsembleError, InputError, NoMatchingFilesError, QeNbError, QeNbWarning

__all__ = ["DEFAULT_MASKS", "FolderWatcher", "WatchSummary", "watch_folder", "assessment_row", "stored_assessments"]

DEFAULT_MASKS = "{case}/{algorithm}.nii.gz"
"""The masks pattern of ``qe-nb watch`` without ``--masks``: one folder per case."""

Signature = tuple[tuple[str, "tuple[int, int, int] | None"], ...]


class _Store(Protocol):
    def record_assessment(self, case: str, *, model_hash: str, risk: float | None, alarms: int | None,
                          reasons: str, error: str, result: Mapping[str, Any] | None = None,
                          source: str = "") -> bool: ...

    def assessed_cases(self, model_hash: str | None = None) -> set[str]: ...


@dataclass
class WatchSummary:
    """What one :meth:`FolderWatcher.run` did.

    Attributes
    ----------
    assessed : list of str
        Cases assessed and recorded by this run, in order (including those recorded with an error).
    failed : list of str
        Of those, the cases recorded with an error.
    already : list of str
        Cases assessed here but found in the store when recording (another watcher was faster).
    pending : list of str
        Cases seen but not complete (or not settled) when the run ended.
    """

    assessed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stat(path: str) -> tuple[int, int, int] | None:
    """(size, mtime_ns, inode) of a file, None when it is absent or not a file."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


def _json_number(value: Any) -> float | str | None:
    """A float for a JSON column: NaN -> None, +-inf -> "inf"/"-inf"."""
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _cells(cube: xr.DataArray, convert: Callable[[Any], Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{algorithm: {label: {metric: value}}} of one case's (algorithm, label, metric) cube."""
    cube = cube.transpose("algorithm", "label", "metric")
    values = np.asarray(cube.values)
    return {
        str(a): {
            str(lab): {str(m): convert(values[i, j, k]) for k, m in enumerate(cube["metric"].values)}
            for j, lab in enumerate(cube["label"].values)
        }
        for i, a in enumerate(cube["algorithm"].values)
    }


def assessment_row(assessed: xr.Dataset, case: str) -> dict[str, Any]:
    """The store row of one case from :meth:`QualityModel.assess`'s Dataset.

    Parameters
    ----------
    assessed : xarray.Dataset
        The assessment (``risk``, ``alarms``, ``reasons``, ``error``, ``similarity`` and
        ``percentile`` over ``case``, the cubes also over algorithm, label, metric).
    case : str
        The case to take.

    Returns
    -------
    dict
        ``risk`` (float or None), ``alarms`` (int or None), ``reasons`` (str), ``error`` (str) and
        ``result`` (a JSON-ready dict with ``percentile``, ``similarity``, ``alarm``), the keyword
        arguments of ``ReviewStore.record_assessment``.
    """
    one = assessed.sel(case=case)
    error = str(one["error"].values) if "error" in one else ""
    risk = float(one["risk"].values)
    alarm_cube = one["alarms"]
    result: dict[str, Any] = {"percentile": _json_number(one["percentile"].values) if "percentile" in one else None}
    if "similarity" in one:
        result["similarity"] = _cells(one["similarity"], _json_number)
    result["alarm"] = _cells(alarm_cube, bool)
    return {
        "risk": None if error or math.isnan(risk) else risk,
        "alarms": None if error else int(np.asarray(alarm_cube.values).sum()),
        "reasons": str(one["reasons"].values) if "reasons" in one else "",
        "error": error,
        "result": result,
    }


def _from_json(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)  # numbers, and "inf" / "-inf"


def stored_assessments(rows: pd.DataFrame, model: Any) -> xr.Dataset:
    """The watcher's rows of a store as :meth:`QualityModel.assess` would return them, for ``model.drift``.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``ReviewStore.assessments(model.content_hash)`` (oldest first): the ``result`` of each row
        holds the case's similarity and alarms (:func:`assessment_row`).
    model : QualityModel
        The model the rows were assessed with (its members, labels and metrics are the coords).

    Returns
    -------
    xarray.Dataset
        Over ``case`` in the rows' order: ``similarity`` and ``alarms`` (case, algorithm, label,
        metric), ``risk``, ``reasons``, ``percentile``, ``error``. A case recorded with an error
        (no similarity) has NaN similarity and no alarm; ``model.drift`` leaves such cases out.

    Raises
    ------
    InputError
        When ``rows`` lacks the store's columns or a row's result lacks a member, label or metric
        of the model (rows of another model).
    """
    needed = {"case", "risk", "reasons", "error", "result"}
    if not isinstance(rows, pd.DataFrame) or not needed <= set(rows.columns):
        raise InputError(f"`rows` must be ReviewStore.assessments(...) with columns {sorted(needed)}; "
                         f"got {type(rows).__name__}.")
    thresholds = model.thresholds
    algorithms, labels, metrics = ([str(v) for v in thresholds[d].values] for d in ("algorithm", "label", "metric"))
    shape = (len(rows), len(algorithms), len(labels), len(metrics))
    similarity, alarms = np.full(shape, np.nan), np.zeros(shape, bool)
    percentile = np.full(len(rows), np.nan)
    for n, (case, result) in enumerate(zip(rows["case"], rows["result"])):
        result = result or {}
        if "percentile" in result:
            percentile[n] = _from_json(result["percentile"])
        for name, target, convert in (("similarity", similarity, _from_json), ("alarm", alarms, bool)):
            if name not in result:
                continue
            try:
                target[n] = [[[convert(result[name][a][lab][m]) for m in metrics] for lab in labels] for a in algorithms]
            except (KeyError, TypeError) as exc:
                raise InputError(f"case {case!r}: its stored {name} lacks {exc} of the model's members, labels "
                                 "and metrics; were the rows assessed with another model?") from None
    dims = ("case", "algorithm", "label", "metric")
    coords = {"case": np.array([str(c) for c in rows["case"]], dtype=object),
              **{d: thresholds[d] for d in ("algorithm", "label", "metric")}}
    for name, coord in thresholds.coords.items():
        if name not in coords:
            coords[name] = coord
    return xr.Dataset(
        {
            "similarity": (dims, similarity),
            "alarms": (dims, alarms),
            "risk": ("case", pd.to_numeric(rows["risk"], errors="coerce").to_numpy(float)),
            "reasons": ("case", np.array([str(r) for r in rows["reasons"]], dtype=object)),
            "percentile": ("case", percentile),
            "error": ("case", np.array([str(e) for e in rows["error"]], dtype=object)),
        },
        coords=coords,
    )


class FolderWatcher:
    """Assess each new case of a folder once, when its files are complete (see the module notes).

    Parameters
    ----------
    folder : str or path-like
        The folder the cases arrive in (it must exist).
    model : QualityModel
        The frozen calibration (:func:`qe_nb.load_model`); its members name the expected files,
        its label scheme reads them, its content hash keys the store's rows.
    store : ReviewStore
        Where the assessments go (``record_assessment``, ``assessed_cases``).
    masks : str, default "{case}/{algorithm}.nii.gz"
        The candidates' pattern, relative to ``folder`` (see :func:`qe_nb.open_ensemble`).
    labels : str, mapping or LabelScheme, optional
        How to read the label maps; default the model's label scheme.
    settle : float, default 3.0
        Seconds the expected files must stay unchanged before the case is assessed.
    missing_after : float, optional
        Assess a case that still lacks members once its present files have not changed for this
        many seconds (the missing members' rows are NaN and alarm). Default: wait for all.
    log : callable, optional
        Called with each progress line (default: print to stderr).
    clock : callable, default time.monotonic
        The clock of the settle rule (tests pass a fake one).

    Raises
    ------
    EnsembleError
        When ``folder`` is not a folder or ``masks`` is not a valid pattern.
    InputError
        For a negative ``settle`` or ``missing_after``.
    """

    def __init__(self, folder: str | os.PathLike, model: Any, store: _Store, *, masks: str = DEFAULT_MASKS,
                 labels: Any = None, settle: float = 3.0, missing_after: float | None = None,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("settle", settle), ("missing_after", missing_after)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise InputError(f"`{name}` must be a number of seconds >= 0; got {value!r}.")
        self.folder = Path(os.path.abspath(os.fspath(folder)))
        if not self.folder.is_dir():
            raise EnsembleError(f"the watched folder {os.fspath(folder)!r} does not exist or is not a folder.")
        self.model = model
        self.store = store
        self.masks = masks
        self.members = [str(a) for a in model.algorithms]
        self.labels = labels if labels is not None else model.scheme
        self.model_hash = str(model.content_hash)
        self.settle = float(settle)
        self.missing_after = None if missing_after is None else float(missing_after)
        self.log = log or _stderr
        self.clock = clock
        self._done: set[str] = set(store.assessed_cases(self.model_hash))
        self._seen: dict[str, tuple[Signature, float]] = {}
        self._paths: dict[str, dict[str, str]] = {}
        self._catalogue: xr.Dataset | None = None
        self._last_problem = ""
        self._open(strict=True)  # a bad pattern fails here, not silently at every poll

    # ------------------------------------------------------------------ the folder

    @property
    def done(self) -> set[str]:
        """Cases in the store for this model (recorded by anyone), as far as this watcher knows."""
        return set(self._done)

    @property
    def pending(self) -> list[str]:
        """Cases seen with some expected file, not yet assessed."""
        return sorted(c for c in self._seen if c not in self._done)

    def _open(self, *, strict: bool = False) -> xr.Dataset | None:
        """The folder's catalogue, None when it holds no candidate yet (or, after the start, a
        problem such as two files for one candidate, which is logged once)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", QeNbWarning)  # e.g. "takes ['reference'] for algorithms"
                ens = open_ensemble(self.folder, masks=self.masks, labels=self.labels)
        except NoMatchingFilesError:  # nothing matches yet
            return None
        except EnsembleError as exc:
            if strict:
                raise
            if str(exc) != self._last_problem:
                self.log(f"watch: cannot catalogue {self.folder}: {exc} (waiting for it to be fixed)")
                self._last_problem = str(exc)
            return None
        self._last_problem = ""
        return ens

    def _case_paths(self, ens: xr.Dataset) -> dict[str, dict[str, str]]:
        algorithms = [str(a) for a in ens["algorithm"].values]
        mask = np.asarray(ens["mask"].values)
        paths = {}
        for i, case in enumerate(str(c) for c in ens["case"].values):
            if case in self._done:
                continue
            paths[case] = {a: str(mask[i, algorithms.index(a)]) if a in algorithms else "" for a in self.members}
        return paths

    def _signature(self, case: str) -> Signature:
        return tuple((a, _stat(p)) for a, p in self._paths.get(case, {}).items())

    def scan(self) -> list[str]:
        """Look at the folder once; the cases ready to assess now, in name order.

        Returns
        -------
        list of str
            Cases not in the store whose expected files all exist and have not changed for
            ``settle`` seconds (or, with ``missing_after``, whose present files have not changed
            for that long).
        """
        ens = self._open()
        self._catalogue = ens
        self._paths = {} if ens is None else self._case_paths(ens)
        now = self.clock()
        ready = []
        for case in sorted(self._paths):
            signature = self._signature(case)
            if all(stat is None for _, stat in signature):
                self._seen.pop(case, None)
                continue
            previous = self._seen.get(case)
            if previous is None or previous[0] != signature:
                self._seen[case] = previous = (signature, now)
            quiet = now - previous[1]
            complete = all(stat is not None for _, stat in signature)
            if complete and quiet >= self.settle:
                ready.append(case)
            elif not complete and self.missing_after is not None and quiet >= max(self.settle, self.missing_after):
                ready.append(case)
        if ready:  # another watcher on the same database may have recorded some meanwhile
            self._done |= set(self.store.assessed_cases(self.model_hash))
            ready = [c for c in ready if c not in self._done]
        for case in (set(self._seen) - set(self._paths)) | (self._done & set(self._seen)):
            del self._seen[case]  # gone from the folder, or recorded meanwhile
        return ready

    # ------------------------------------------------------------------ one case

    def _one_case(self, case: str) -> xr.Dataset:
        ens = self._catalogue
        assert ens is not None
        index = [str(c) for c in ens["case"].values].index(case)
        one = ens.isel(case=[index])
        if [str(a) for a in one["algorithm"].values] != self.members:
            one = one.reindex(algorithm=self.members, fill_value="")  # other algorithms out, absent members ""
        return one

    def assess(self, case: str) -> dict[str, Any] | None:
        """Assess one ready case (from the last :meth:`scan`) and record it.

        Parameters
        ----------
        case : str
            A case :meth:`scan` returned.

        Returns
        -------
        dict or None
            The recorded row (with ``recorded``: False when the store already had the case), or
            None when the case's files changed while it was assessed (it waits to settle again).

        Raises
        ------
        InputError
            When the model refuses the folder's settings (other labels, metrics, members): every
            case would fail the same way, so the watcher stops instead of recording them.
        """
        before = self._seen[case][0]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assessed = self.model.assess(self._one_case(case))
            row = assessment_row(assessed, case)
        except InputError:
            raise
        except (QeNbError, OSError, MemoryError) as exc:
            caught = []
            row = {"risk": None, "alarms": None, "reasons": "", "error": f"case {case!r}: {exc}", "result": {}}
        if not row["error"]:  # a failed case's warning ("1 of 1 cases failed") only repeats its error
            row["result"]["warnings"] = [str(w.message) for w in caught]
        after = self._signature(case)
        if after != before:
            self._seen[case] = (after, self.clock())
            self.log(f"watch: {case} changed while it was assessed; waiting for it to settle again")
            return None
        files = {a: [os.path.relpath(p, self.folder), stat[0], stat[1]]
                 for (a, stat), p in zip(after, self._paths[case].values()) if stat is not None}
        row["result"] = {**row["result"], "missing": [a for a, stat in after if stat is None], "files": files}
        row["recorded"] = bool(self.store.record_assessment(
            case, model_hash=self.model_hash, risk=row["risk"], alarms=row["alarms"], reasons=row["reasons"],
            error=row["error"], result=row["result"], source=str(self.folder)))
        self._done.add(case)
        self._seen.pop(case, None)
        return row

    def _say(self, case: str, row: dict[str, Any]) -> None:
        for text in row["result"].get("warnings", ()):
            self.log(f"watch: {case}: warning: {text}")
        if not row["recorded"]:
            self.log(f"watch: {case} was already in the store for this model (another watcher?); not recorded again")
        elif row["error"]:
            self.log(f"assessed {case}: error: {row['error']} (recorded; not retried)")
        else:
            missing = row["result"].get("missing") or []
            note = f" (without {', '.join(missing)})" if missing else ""
            words = row["reasons"].split("; ") if row["reasons"] else ["no alarm"]
            more = f"; +{len(words) - 3} more" if len(words) > 3 else ""  # the store keeps them all
            self.log(f"assessed {case}{note}: risk {row['risk']:g}, {'; '.join(words[:3])}{more}")

    # ------------------------------------------------------------------ the loop

    def run(self, *, interval: float = 1.0, once: bool = False, stop: threading.Event | None = None) -> WatchSummary:
        """Poll the folder and assess cases as they become complete, until ``stop`` is set.

        Parameters
        ----------
        interval : float, default 1.0
            Seconds between two looks at the folder.
        once : bool, default False
            Assess what is complete and return: look, wait one ``settle`` when some case was not
            yet seen unchanged for that long, look again, assess, return.
        stop : threading.Event, optional
            Set it (from a signal handler or another thread) to return after the case in progress.

        Returns
        -------
        WatchSummary
            The cases assessed, failed, found already recorded, and still pending.
        """
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise InputError(f"`interval` must be a positive number of seconds; got {interval!r}.")
        stop = stop or threading.Event()
        summary = WatchSummary()
        looks = 0
        while not stop.is_set():
            ready = self.scan()
            looks += 1
            for case in ready:
                if stop.is_set():
                    break
                row = self.assess(case)
                if row is None:
                    continue
                self._say(case, row)
                if not row["recorded"]:
                    summary.already.append(case)
                    continue
                summary.assessed.append(case)
                if row["error"]:
                    summary.failed.append(case)
            if once:
                waiting = [c for c in self.pending if c not in ready]
                if looks >= 2 or not waiting:
                    break
                stop.wait(self.settle if self.missing_after is None else max(self.settle, self.missing_after))
                continue
            stop.wait(interval)
        summary.pending = self.pending
        return summary


def watch_folder(folder: str | os.PathLike, model: Any, store: _Store, *, masks: str = DEFAULT_MASKS,
                 labels: Any = None, settle: float = 3.0, missing_after: float | None = None,
                 interval: float = 1.0, once: bool = False, stop: threading.Event | None = None,
                 log: Callable[[str], None] | None = None) -> WatchSummary:
    """Watch ``folder`` and record an assessment of each new complete case (:class:`FolderWatcher`).

    Parameters
    ----------
    folder, model, store, masks, labels, settle, missing_after, log
        As for :class:`FolderWatcher`.
    interval, once, stop
        As for :meth:`FolderWatcher.run`.

    Returns
    -------
    WatchSummary
        What the run did.
    """
    watcher = FolderWatcher(folder, model, store, masks=masks, labels=labels, settle=settle,
                            missing_after=missing_after, log=log)
    return watcher.run(interval=interval, once=once, stop=stop)
