"""``scores.qe``: the core functions as methods of a scores Dataset or a similarity cube.

Sugar only: every method forwards in one line to the function of the same name with the
cube (``scores["similarity"]`` for a Dataset, the DataArray itself otherwise); no state,
no logic of its own. Importing this module registers the accessor.

Examples
--------
>>> import numpy as np, xarray as xr
>>> import qe_nb.core.accessor
>>> sim = xr.DataArray(np.arange(8.0).reshape(4, 1, 1, 2), dims=("case", "algorithm", "label", "metric"),
...                    coords={"case": list("abcd"), "algorithm": ["x"], "label": ["t"], "metric": ["dice", "hd"]})
>>> scores = xr.Dataset({"similarity": sim})
>>> scores.qe.risk(0.0).values.tolist()
[1, 1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import xarray as xr

__all__ = ["ScoresAccessor", "SimilarityAccessor"]


class _Forwards:
    """The forwards shared by the Dataset and DataArray accessors."""

    _obj: xr.Dataset | xr.DataArray

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    @property
    def similarity(self) -> xr.DataArray:
        """The similarity cube the methods work on."""
        raise NotImplementedError

    def thresholds(self, alpha: float | xr.DataArray = 0.0, **kwargs: Any) -> xr.DataArray:
        """:func:`qe_nb.thresholds` of the similarity cube."""
        from qe_nb.core.alarms import thresholds

        return thresholds(self.similarity, alpha, **kwargs)

    def alarms(self, alpha: float | xr.DataArray = 0.0, **kwargs: Any) -> xr.DataArray:
        """:func:`qe_nb.alarms` of the similarity cube."""
        from qe_nb.core.alarms import alarms

        return alarms(self.similarity, alpha, **kwargs)

    def risk(self, alpha: float | xr.DataArray = 0.0, **kwargs: Any) -> xr.DataArray:
        """:func:`qe_nb.risk` of :func:`qe_nb.alarms` of the similarity cube."""
        from qe_nb.core.alarms import alarms, risk

        return risk(alarms(self.similarity, alpha, **kwargs))

    def risk_scores(self, **kwargs: Any) -> xr.Dataset:
        """:func:`qe_nb.risk_scores` of the Dataset (its ``pairwise``, ``volume``, ... too) or cube."""
        from qe_nb.core.risk import risk_scores

        return risk_scores(self._obj, **kwargs)

    def threshold_table(self, alpha: float | xr.DataArray = 0.1, **kwargs: Any) -> pd.DataFrame:
        """:func:`qe_nb.threshold_table` of the similarity cube."""
        from qe_nb.core.alarms import threshold_table

        return threshold_table(self.similarity, alpha, **kwargs)

    def worklist(self, alpha: float | xr.DataArray = 0.0, **kwargs: Any) -> pd.DataFrame:
        """:func:`qe_nb.worklist` of the similarity cube."""
        from qe_nb.core.triage import worklist

        return worklist(self.similarity, alpha, **kwargs)

    def sweep(self, *args: Sequence[float], **kwargs: Any) -> xr.Dataset:
        """:func:`qe_nb.sweep` of the similarity cube (``alphas`` and options as there)."""
        from qe_nb.core.calibration import sweep

        return sweep(self.similarity, *args, **kwargs)

    def calibrate(self, **kwargs: Any) -> float | xr.DataArray:
        """:func:`qe_nb.calibrate` of the similarity cube."""
        from qe_nb.core.calibration import calibrate

        return calibrate(self.similarity, **kwargs)


@xr.register_dataset_accessor("qe")
class ScoresAccessor(_Forwards):
    """``scores.qe``: the core functions over ``scores["similarity"]``."""

    @property
    def similarity(self) -> xr.DataArray:
        """``scores["similarity"]``."""
        return self._obj["similarity"]


@xr.register_dataarray_accessor("qe")
class SimilarityAccessor(_Forwards):
    """``similarity.qe``: the core functions over this similarity cube."""

    @property
    def similarity(self) -> xr.DataArray:
        """The cube itself."""
        return self._obj
