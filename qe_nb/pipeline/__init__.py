"""Cohort runs: scoring every case of an ensemble, serially, in local processes or on dask,
with a per-case cache to resume, and the scores file.

Reads cases through :mod:`qe_nb.data` and computes with :mod:`qe_nb.core`; no UI. Scores
cubes get the ``.qe`` accessor (:mod:`qe_nb.core.accessor`) from ``import qe_nb``.
"""
