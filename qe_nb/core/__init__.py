"""The science: pure functions over numpy arrays and xarray objects.

Label schemes, metrics and their distance engine, fusion, thresholds and alarms, calibration,
triage and the statistics they share. Nothing here reads or writes files, prints, or imports
matplotlib or ipywidgets (import-linter contracts in ``pyproject.toml`` keep it so).
"""
