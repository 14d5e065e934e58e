"""Uses the public API as README.md and the notebooks do; `mypy` checks it against the hints.

Not run by pytest (the file name does not start with test_): tests/test_architecture.py runs
mypy over it with the settings in pyproject.toml.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

import qe_nb


def tour(root: str) -> pd.DataFrame:
    ens: xr.Dataset = qe_nb.open_ensemble(
        root, masks="{case}/{algorithm}.nii.gz", reference="{case}/reference.nii.gz", labels="brats-regions"
    )
    scores: xr.Dataset = qe_nb.score(ens, fusion="mav", metrics=("dice", "hd95"))
    sim: xr.DataArray = scores["similarity"]
    alpha = qe_nb.calibrate(sim, objective="entropy")
    flags: xr.DataArray = qe_nb.alarms(sim, alpha)
    count: xr.DataArray = qe_nb.risk(flags)
    table: pd.DataFrame = qe_nb.threshold_table(sim, alpha)
    sweep: pd.DataFrame = qe_nb.sweep_table(sim, quality=count.astype(float))
    entropy: float = qe_nb.alarm_entropy(count)
    path = qe_nb.save_scores(scores, "scores.nc")
    again: xr.Dataset = qe_nb.load_scores(path)
    del table, sweep, entropy, again
    return qe_nb.worklist(sim, alpha)


def arrays() -> float:
    a = np.zeros((4, 4, 4), dtype=bool)
    b = a.copy()
    a[1, 1, 1] = b[1, 1, 2] = True
    fused: np.ndarray = qe_nb.fuse([a.astype(np.uint8), b.astype(np.uint8)], method="mav")
    del fused
    return qe_nb.dice(a, b) + qe_nb.hausdorff(a, b, spacing=(1.0, 1.0, 2.0))


def continuous_qa(reference: xr.Dataset, root: str, db: str) -> pd.DataFrame:
    model: qe_nb.QualityModel = qe_nb.fit(reference, 0.1, by="label")
    model.save("model.json")
    again: qe_nb.QualityModel = qe_nb.load_model("model.json")
    new: xr.Dataset = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz", labels=again.scheme)
    assessed: xr.Dataset = again.assess(new, cases=["case-01"])
    with qe_nb.ReviewStore(db) as store:
        store.record("case-01", "reject", reviewer="dr-a", note="missed the enhancing tumour")
        verdicts: pd.DataFrame = store.current()
        performance: qe_nb.VerdictPerformance = qe_nb.verdict_performance(assessed["risk"], store)
        history: pd.DataFrame = store.history("case-01")
    del verdicts, performance, history
    return again.drift(assessed)
