"""Serving the triage app: ``qe-nb app`` runs ``notebooks/triage_app.ipynb`` with Voila (the
guarded server of :mod:`qe_nb.ui.voila_server`: a token off loopback, Host / Origin checks), and
the notebook builds the app from ``QE_NB_*`` environment variables.

- :func:`app_from_environment` -- the :class:`qe_nb.ui.triage_app.TriageApp` the notebook shows;
- :func:`reviewer_from_environment` -- the reviewer's name the server provides (URL, option, hub);
- :func:`voila_command` -- the Voila command line and environment ``qe-nb app`` runs;
- :func:`database_location` -- a review database as the app receives it (URL or absolute path);
- :func:`demo_environment` -- a small synthetic cohort to try the notebook without ``qe-nb app``;
- :func:`app_notebook` -- where the notebook is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qe_nb.exceptions import InputError

if TYPE_CHECKING:
    from qe_nb.ui.triage_app import TriageApp

__all__ = ["ENVIRONMENT", "app_from_environment", "reviewer_from_environment", "demo_environment",
           "app_notebook", "database_location", "voila_command"]

ENVIRONMENT: dict[str, str] = {
    "QE_NB_SCORES": "the scores file (required without QE_NB_MODEL)",
    "QE_NB_MODEL": "a model file (qe-nb fit): serve the assessments `qe-nb watch` recorded with it in QE_NB_DB",
    "QE_NB_ENSEMBLE_ROOT": "the cohort folder, for the case viewer",
    "QE_NB_MASKS": "pattern of candidate files, with {case} and {algorithm}",
    "QE_NB_REFERENCE": "pattern of reference files, with {case}",
    "QE_NB_IMAGES": "pattern of image files, with {case} and {modality}",
    "QE_NB_LABELS": "label scheme of the cohort",
    "QE_NB_DB": "the review database: a path (.db) or a URL (sqlite:///..., postgresql://...); "
                "default SCORES.reviews.db beside the scores",
    "QE_NB_VERDICTS": "an old verdict CSV file to import into the database once "
                      "(default: SCORES.verdicts.csv beside the scores, when it exists)",
    "QE_NB_REVIEWER": "the reviewer's name (default: asked in the page, or ?reviewer=NAME in the URL)",
    "QE_NB_REFRESH": "seconds between refreshes of the worklist from the database (default 15; 0: off)",
    "QE_NB_ALPHA": "the initial α (default: the calibrated α)",
    "QE_NB_LABEL_MEAN": "1: one value per algorithm and metric (mean over labels)",
    "QE_NB_ROWS": "worklist rows shown",
    "QE_NB_POOL": "the thresholds' pooling: algorithm (per member, default) or all",
}
"""The environment variables :func:`app_from_environment` reads (``qe-nb app`` sets them)."""


def _flag(value: str) -> bool:
    """An environment switch: 1, true, yes or on."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def app_from_environment(environ: Mapping[str, str] | None = None) -> TriageApp:
    """Build the :class:`qe_nb.ui.triage_app.TriageApp` that ``qe-nb app`` serves, from ``QE_NB_*`` variables.

    Parameters
    ----------
    environ : mapping, optional
        Default :data:`os.environ`. See :data:`ENVIRONMENT` for the variables.

    With ``QE_NB_MODEL`` the app is a :class:`qe_nb.ui.stream_worklist.StreamTriageApp` over the
    assessments that ``qe-nb watch`` recorded with that model in ``QE_NB_DB``.

    Raises
    ------
    InputError
        When ``QE_NB_SCORES`` and ``QE_NB_MODEL`` are unset, ``QE_NB_MODEL`` is set without ``QE_NB_DB``, ``QE_NB_ALPHA`` / ``QE_NB_ROWS`` / ``QE_NB_REFRESH`` are not numbers, or
        ``QE_NB_POOL`` is neither "algorithm" nor "all".
    """
    from qe_nb.ui.triage_app import TriageApp

    env = os.environ if environ is None else environ
    scores, model = env.get("QE_NB_SCORES", ""), env.get("QE_NB_MODEL", "")
    if not scores and not model:
        raise InputError("QE_NB_SCORES is not set; start the app with `qe-nb app scores.nc`.")
    if model and not env.get("QE_NB_DB"):
        raise InputError("QE_NB_MODEL needs QE_NB_DB, the database `qe-nb watch` writes.")
    numbers = {}
    for key, kind in (("QE_NB_ALPHA", float), ("QE_NB_ROWS", int), ("QE_NB_REFRESH", float)):
        text = env.get(key, "")
        if text:
            try:
                numbers[key] = kind(text)
            except ValueError:
                raise InputError(f"{key} must be a{'n integer' if kind is int else ' number'}; got {text!r}.") from None
    root = env.get("QE_NB_ENSEMBLE_ROOT", "")

    def catalogue() -> Any:
        from qe_nb.data.ensemble import open_ensemble

        return open_ensemble(
            root, masks=env.get("QE_NB_MASKS") or "{case}/{algorithm}.nii.gz",
            reference=env.get("QE_NB_REFERENCE") or None, images=env.get("QE_NB_IMAGES") or None,
            labels=env.get("QE_NB_LABELS") or None,
        )

    ensemble = catalogue() if root else None
    if model:
        from qe_nb.ui.stream_worklist import StreamTriageApp

        return StreamTriageApp(env["QE_NB_DB"], model, ensemble=ensemble, catalogue=catalogue if root else None,
                               reviewer=reviewer_from_environment(env), rows=numbers.get("QE_NB_ROWS", 30),
                               refresh=numbers.get("QE_NB_REFRESH", 15.0))
    return TriageApp(
        scores, ensemble=ensemble, verdicts=env.get("QE_NB_DB") or None,
        import_csv=env.get("QE_NB_VERDICTS") or None, reviewer=reviewer_from_environment(env),
        alpha=numbers.get("QE_NB_ALPHA"), label_mean=_flag(env.get("QE_NB_LABEL_MEAN", "")),
        rows=numbers.get("QE_NB_ROWS", 30), pool=env.get("QE_NB_POOL") or "algorithm",
        refresh=numbers.get("QE_NB_REFRESH", 15.0),
    )


def reviewer_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The reviewer's name the server provides, or "" (the page then asks for it).

    In this order: ``reviewer=NAME`` in the page's URL (Voila hands the query string to the
    notebook as ``QUERY_STRING``), ``QE_NB_REVIEWER`` (``qe-nb app --reviewer``), the Jupyter
    user (``JUPYTERHUB_USER``, set by JupyterHub).

    Examples
    --------
    >>> reviewer_from_environment({"QUERY_STRING": "token=x&reviewer=Dr%20Ada", "QE_NB_REVIEWER": "b"})
    'Dr Ada'
    >>> reviewer_from_environment({"QE_NB_REVIEWER": " b "})
    'b'
    """
    from urllib.parse import parse_qs

    env = os.environ if environ is None else environ
    query = parse_qs(env.get("QUERY_STRING", ""))
    for value in (*query.get("reviewer", []), env.get("QE_NB_REVIEWER", ""), env.get("JUPYTERHUB_USER", "")):
        if value and value.strip():
            return value.strip()
    return ""



def demo_environment(folder: str | os.PathLike | None = None, *, n_cases: int = 12) -> dict[str, str]:
    """Write a small synthetic cohort and its scores; return the ``QE_NB_*`` variables for it.

    For trying the app notebook without ``qe-nb app`` (and for running it in CI).
    """
    import tempfile

    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE, synthetic_cohort
    from qe_nb.pipeline.scoring import save_scores, score

    folder = Path(tempfile.mkdtemp(prefix="qe_nb-triage-")) if folder is None else Path(folder)
    ensemble = synthetic_cohort(folder / "cohort", kind="glioma", n_cases=n_cases, n_algorithms=3,
                                shape=(32, 40, 40), seed=0)
    save_scores(score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False),
                folder / "scores.nc")
    return {"QE_NB_SCORES": str(folder / "scores.nc"), "QE_NB_ENSEMBLE_ROOT": str(folder / "cohort"),
            "QE_NB_MASKS": MASKS, "QE_NB_REFERENCE": REFERENCE, "QE_NB_IMAGES": IMAGES}


def app_notebook() -> Path:
    """The notebook ``qe-nb app`` serves: ``notebooks/triage_app.ipynb`` of the source tree, or
    the copy shipped inside the package after a plain ``pip install``.

    Raises
    ------
    FileNotFoundError
        When neither is there (a broken installation).
    """
    in_tree = Path(__file__).resolve().parents[2] / "notebooks" / "triage_app.ipynb"
    packaged = Path(__file__).resolve().parent / "triage_app.ipynb"
    for path in (in_tree, packaged):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the app notebook is missing (looked at {str(in_tree)!r} and {str(packaged)!r}); "
        "reinstall qe-nb."
    )


def database_location(location: str | os.PathLike) -> str:
    """A review database as the app receives it: a URL (``sqlite:///...``, ``postgresql://...``)
    unchanged, a path made absolute (the server may run elsewhere than the caller's folder).

    Examples
    --------
    >>> database_location("postgresql://qe@db.example/reviews")
    'postgresql://qe@db.example/reviews'
    """
    text = os.fspath(location)
    if "://" in str(text) or str(text).startswith("sqlite:"):
        return str(text)
    return str(Path(text).resolve())


def voila_command(
    scores: str | os.PathLike | None,
    *,
    model: str | os.PathLike | None = None,
    ensemble_root: str | os.PathLike | None = None,
    masks: str | None = None,
    reference: str | None = None,
    images: str | None = None,
    labels: str | None = None,
    db: str | os.PathLike | None = None,
    verdicts: str | os.PathLike | None = None,
    reviewer: str | None = None,
    alpha: float | None = None,
    label_mean: bool = False,
    rows: int | None = None,
    pool: str | None = None,
    refresh: float | None = None,
    host: str = "127.0.0.1",
    port: int = 8866,
    token: str | None = None,
    allow_hosts: tuple[str, ...] | list[str] = (),
    open_browser: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the Voila server that serves the triage app.

    Voila runs the notebook with the server's environment, so the app's settings travel as
    the ``QE_NB_*`` variables of :data:`ENVIRONMENT`. The server is
    :mod:`qe_nb.ui.voila_server`: Voila with a token login when ``token`` is given and a
    ``Host`` / ``Origin`` check (DNS rebinding) on every request.

    Parameters
    ----------
    scores : str or path-like or None
        The scores file; None with ``model``.
    model : str or path-like, optional
        A model file: serve the assessments ``qe-nb watch`` recorded with it in ``db`` (required then).
    host : str, default "127.0.0.1"
        The address to listen on; any address other than loopback needs ``token``.
    token : str, optional
        The token a browser must bring once (``?token=...``); it travels in the environment
        (``QE_NB_APP_TOKEN``), not on the command line.
    allow_hosts : sequence of str
        Extra host names the ``Host`` check accepts (a DNS alias, a reverse proxy's name).
    db, verdicts, reviewer, refresh
        See :class:`qe_nb.ui.triage_app.TriageApp` (``verdicts``, ``import_csv``,
        ``reviewer``, ``refresh``).

    Returns
    -------
    argv : list of str
        ``python -m qe_nb.ui.voila_server notebooks/triage_app.ipynb --Voila.ip=HOST --port=PORT ...``
    env : dict
        ``environ`` (default :data:`os.environ`) plus the ``QE_NB_*`` variables; variables of
        settings not given are removed, so an outer environment cannot leak into the app.

    Raises
    ------
    InputError
        When ``scores`` is not a file (or is given with ``model``), ``model`` is not a file or comes
        without ``db``, ``ensemble_root`` not a folder, ``pool`` not
        "algorithm" or "all", ``port`` not in 1..65535, or ``host`` is not loopback and no
        ``token`` is given.
    """
    import sys

    from qe_nb.ui.access import HOSTS_VARIABLE, TOKEN_VARIABLE, token_required

    if (scores is None) == (model is None):
        raise InputError("give a scores file or a model (with the database `qe-nb watch` writes), not "
                         f"{'both' if model is not None else 'neither'}.")
    scores_path = None if scores is None else Path(os.fspath(scores)).resolve()
    if scores_path is not None and not scores_path.is_file():
        raise InputError(f"scores file {str(scores_path)!r} does not exist; write it with `qe-nb score`.")
    model_path = None if model is None else Path(os.fspath(model)).resolve()
    if model_path is not None and (not model_path.is_file() or db is None):
        raise InputError(f"model file {str(model_path)!r} does not exist; write it with `qe-nb fit`."
                         if not model_path.is_file() else "a model needs `db`, the database `qe-nb watch` writes.")
    if ensemble_root is not None and not Path(os.fspath(ensemble_root)).is_dir():
        raise InputError(f"`ensemble_root` {str(ensemble_root)!r} is not a folder; expected the cohort folder.")
    if pool is not None:
        from qe_nb.core.checks import check_pool

        check_pool(pool)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InputError(f"`port` must be an integer in 1..65535; got {port!r}.")
    if token_required(host) and not token:
        raise InputError(f"serving on {host!r} (not loopback) needs a token; give one or let "
                         "`qe-nb app` generate it.")
    hidden = set(ENVIRONMENT) | {TOKEN_VARIABLE, HOSTS_VARIABLE}
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in hidden}
    settings = {
        "QE_NB_SCORES": None if scores_path is None else str(scores_path),
        "QE_NB_MODEL": None if model_path is None else str(model_path),
        "QE_NB_ENSEMBLE_ROOT": None if ensemble_root is None else str(Path(os.fspath(ensemble_root)).resolve()),
        "QE_NB_MASKS": masks, "QE_NB_REFERENCE": reference, "QE_NB_IMAGES": images,
        "QE_NB_LABELS": labels,
        "QE_NB_DB": None if db is None else database_location(db),
        "QE_NB_VERDICTS": None if verdicts is None else str(Path(os.fspath(verdicts)).resolve()),
        "QE_NB_REVIEWER": reviewer.strip() if reviewer and reviewer.strip() else None,
        "QE_NB_ALPHA": None if alpha is None else repr(float(alpha)),
        "QE_NB_LABEL_MEAN": "1" if label_mean else None,
        "QE_NB_ROWS": None if rows is None else str(int(rows)),
        "QE_NB_POOL": pool,
        "QE_NB_REFRESH": None if refresh is None else repr(float(refresh)),
        TOKEN_VARIABLE: token or None,
        HOSTS_VARIABLE: ",".join(allow_hosts) or None,
    }
    env.update({k: v for k, v in settings.items() if v is not None})
    argv = [sys.executable, "-m", "qe_nb.ui.voila_server", str(app_notebook()), f"--Voila.ip={host}",
            f"--port={port}", "--Voila.port_retries=0", "--VoilaConfiguration.show_tracebacks=False"]
    if not open_browser:
        argv.append("--no-browser")
    return argv, env
