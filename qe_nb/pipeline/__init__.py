"""Cohort runs: scoring every case of an ensemble, serially, in local processes or on dask,
with a per-case cache to resume, and the scores file.

Reads cases through :mod:`qe_nb.data` and computes with :mod:`qe_nb.core`; no UI. Scores
cubes made here get the ``.qe`` accessor (:mod:`qe_nb.core.accessor`).
"""

from qe_nb.core import accessor as _accessor  # noqa: F401  (registers scores.qe)
