"""One alpha per run (issue 14): settle_alpha stores it with the scores, run_alpha reads it back,
every consumer path gets the same alpha; reasons a person can read (the reasons table, the top
reasons with "+N more", missing candidates named once, the alarm grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import qe_nb
from qe_nb.core.calibration import calibrate, sweep_table
from qe_nb.core.reasons import REASON_COLUMNS, alarm_grid, reasons
from qe_nb.core.run_alpha import run_alpha, settle_alpha
from qe_nb.core.statistics import case_quality, label_mean
from qe_nb.core.triage import worklist
from qe_nb.exceptions import InputError

DIMS = ("case", "algorithm", "label", "metric")


@pytest.fixture(scope="module")
def scores() -> xr.Dataset:
    """A demo-like cube: 40 cases, 4 members, 3 structures, Dice and HD95, a reference, one missing."""
    rng = np.random.default_rng(3)
    n_case, algorithms, labels = 40, ["a", "b", "c", "d"], ["whole_tumor", "tumor_core", "enhancing_tumor"]
    dice = np.clip(rng.normal(0.85, 0.08, (n_case, 4, 3)), 0, 1)
    dice[5, 1] = 0.2
    hd = np.abs(rng.normal(3, 1.5, (n_case, 4, 3))) + (1 - dice) * 20
    hd[7, 2, 2] = np.inf
    sim = np.stack([dice, hd], axis=-1)
    sim[9, 3] = np.nan
    missing = np.zeros((n_case, 4), bool)
    missing[9, 3] = True
    quality = np.stack([np.clip(rng.normal(0.8, 0.1, (n_case, 3)), 0, 1), rng.random((n_case, 3))], -1)
    cases = [f"case-{i:03d}" for i in range(n_case)]
    return xr.Dataset(
        {"similarity": (DIMS, sim), "missing": (("case", "algorithm"), missing),
         "quality": (("case", "label", "metric"), quality)},
        coords={"case": cases, "algorithm": algorithms, "label": labels, "metric": ["dice", "hd95"],
                "higher_is_better": ("metric", [True, False])},
    )


# --------------------------------------------------------------------------- one alpha


def test_default_is_entropy_calibration_and_says_so(scores):
    got = run_alpha(scores)
    assert got.alpha == calibrate(scores["similarity"], objective="entropy")
    assert (got.method, got.label_mean, got.pool, got.stored) == ("entropy", False, "algorithm", False)
    alpha, how = got
    assert alpha == got.alpha and how.startswith("calibrated by the entropy of the alarm counts, alarms on "
                                                 "every structure; not stored with the scores: the default")
    assert got.text == f"α = {alpha:.2f} ({how})"


def test_settled_alpha_is_the_same_in_every_consumer_path(scores, tmp_path):
    settled = settle_alpha(scores, label_mean=True)
    assert settled.attrs["alpha_method"] == "entropy" and settled.attrs["alpha_label_mean"] == 1
    assert "alpha" not in scores.attrs  # the input is not changed
    back = qe_nb.load_scores(qe_nb.save_scores(settled, tmp_path / "scores.nc"))
    expected = calibrate(label_mean(scores["similarity"]), objective="entropy")
    for source in (settled, back):
        got = run_alpha(source)
        assert got.alpha == expected and got.stored and got.label_mean
        assert run_alpha(source, label_mean=True).alpha == expected  # what --label-mean asks for
        sim = got.similarity(source)
        assert sim.sizes["label"] == 1
        table = worklist(sim, got.alpha, pool=got.pool)  # the worklist's alpha
        assert table["risk"].sum() == qe_nb.risk(qe_nb.alarms(sim, expected)).sum()
        sweep = sweep_table(sim, alphas=[0.0, got.alpha])  # the sweep shows the same alpha
        assert got.alpha in sweep["alpha"].tolist()
    assert back.attrs["alpha"] == pytest.approx(expected)


def test_stored_alpha_for_other_settings_is_not_used_and_the_note_says_why(scores):
    settled = settle_alpha(scores, label_mean=True)
    got = run_alpha(settled, label_mean=False)
    assert not got.stored and got.alpha == run_alpha(scores).alpha
    assert got.note == f"the stored α = {settled.attrs['alpha']:.2f} is for the mean over the structures"
    assert run_alpha(settle_alpha(scores), pool="all").note == (
        f"the stored α = {run_alpha(scores).alpha:.2f} is for pool='algorithm'")


def test_given_pearson_and_per_group_alpha_round_trip(scores, tmp_path):
    given = run_alpha(settle_alpha(scores, 0.1))
    assert (given.alpha, given.method, given.how.split(",")[0]) == (0.1, "given", "given")
    pearson = settle_alpha(scores, objective="pearson")
    assert pearson.attrs["alpha_method"] == "pearson:dice"
    assert pearson.attrs["alpha"] == calibrate(scores["similarity"], objective="pearson",
                                               quality=case_quality(scores["quality"], "dice", skipna=True))
    grouped = settle_alpha(scores, by="label")
    back = run_alpha(qe_nb.load_scores(qe_nb.save_scores(grouped, tmp_path / "g.nc")))
    direct = calibrate(scores["similarity"], by="label")
    xr.testing.assert_allclose(back.alpha, direct.drop_attrs() if hasattr(direct, "drop_attrs") else direct)
    assert back.value_text.startswith("α per label: whole_tumor ")
    assert isinstance(grouped.attrs["alpha_groups"], str) and grouped.attrs["alpha_by"] == "label"


def test_settle_alpha_errors(scores):
    with pytest.raises(InputError, match=r"`objective='pearson'` needs the fusion's quality against a reference, "
                                         r"but the scores hold no `quality`"):
        settle_alpha(scores.drop_vars("quality"), objective="pearson")
    with pytest.raises(InputError, match=r"`scores` must be the Dataset from qe_nb.score; got DataArray"):
        settle_alpha(scores["similarity"])
    with pytest.raises(InputError, match=r"`label_mean` must be True or False; got 'yes'"):
        settle_alpha(scores, label_mean="yes")
    with pytest.raises(InputError, match=r"`scores` must be the Dataset from qe_nb.score; got str"):
        run_alpha("scores.nc")
    broken = scores.assign_attrs(alpha=0.1, alpha_method="entropy", alpha_groups="{not json")
    with pytest.raises(InputError, match=r"the scores' attr `alpha_groups` is not the JSON settle_alpha writes"):
        run_alpha(broken)


# --------------------------------------------------------------------------- reasons


def test_reasons_table_matches_the_alarms(scores):
    alpha = run_alpha(scores).alpha
    table = reasons(scores["similarity"], alpha)
    assert tuple(table.columns) == REASON_COLUMNS
    flags = qe_nb.alarms(scores["similarity"], alpha)
    assert table["n_alarms"].sum() == int(flags.sum())
    row = table[(table.case == "case-005") & (table.algorithm == "b") & (table.metric == "dice")].iloc[0]
    assert row["direction"] == "<" and row["value"] < row["threshold"] and row["excess"] > 0
    for _, per_case in table.groupby("case"):  # worst first
        excess = per_case["excess"].to_numpy()
        assert (excess[:-1] >= excess[1:]).all()
    assert table[(table.case == "case-007") & (table.metric == "hd95") & (table.algorithm == "c")
                 & (table.label == "enhancing_tumor")]["excess"].item() == np.inf


def test_missing_candidate_is_one_named_reason(scores):
    alpha = run_alpha(scores).alpha
    table = reasons(scores, alpha, cases=["case-009"])  # the Dataset brings `missing`
    first = table.iloc[0]
    assert (first["algorithm"], first["direction"], first["n_alarms"]) == ("d", "missing", 6)
    assert first["text"] == "d: no file (missing candidate, 6 alarms)"
    text = worklist(scores["similarity"], alpha, missing=scores["missing"]).set_index("case").loc["case-009", "reasons"]
    assert text.startswith("d: no file (missing candidate, 6 alarms)")


def test_worklist_top_reasons_and_more(scores):
    alpha = run_alpha(scores).alpha
    full = worklist(scores["similarity"], alpha)
    short = worklist(scores["similarity"], alpha, max_reasons=2)
    pd.testing.assert_frame_equal(full.drop(columns="reasons"), short.drop(columns="reasons"))
    table = reasons(scores["similarity"], alpha)
    for case, text in short[["case", "reasons"]].itertuples(index=False):
        rows = table[table.case == case]["text"].tolist()
        if len(rows) > 2:
            assert text == f"{rows[0]}; {rows[1]}; +{len(rows) - 2} more"
        else:
            assert text == "; ".join(rows)
    assert max(len(t) for t in short["reasons"]) < 120
    with pytest.raises(InputError, match=r"`max_reasons` must be a positive int or None \(all\); got 0"):
        worklist(scores["similarity"], alpha, max_reasons=0)
    with pytest.raises(InputError, match=r"`missing` must be the bool DataArray over \(case, algorithm\)"):
        worklist(scores["similarity"], alpha, missing=scores["similarity"])


def test_reasons_errors_and_alarm_grid(scores):
    alpha = run_alpha(scores).alpha
    with pytest.raises(InputError, match=r"`cases` names cases not in `similarity`: \['nope'\]"):
        reasons(scores["similarity"], alpha, cases=["nope"])
    grid = alarm_grid(scores["similarity"], alpha, "case-005")
    assert grid.index.name == "algorithm" and list(grid.columns) == ["dice", "hd95"]
    flags = qe_nb.alarms(scores["similarity"], alpha).sel(case="case-005")
    assert grid.loc["b", "dice"] == int(flags.sel(algorithm="b", metric="dice").sum())
    assert int(grid.values.sum()) == int(flags.sum())
    with pytest.raises(InputError, match=r"Unknown `case` 'nope'; expected one of the cube's 40 cases"):
        alarm_grid(scores["similarity"], alpha, "nope")
