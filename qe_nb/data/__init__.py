"""Data in and out: image files, the ensemble catalogue, the data manifest, synthetic cohorts.

Builds on :mod:`qe_nb.core` (label schemes); knows nothing of scoring runs or the UI.
"""
