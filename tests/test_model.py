"""The frozen calibration (issue 16): fit on a reference cohort, assess new cases, save and load.

The central check computes ``median - alpha * MAD`` of the 40 reference cases independently
with numpy (per algorithm x label x metric, direction by metric) and compares the alarms of 20
new cases with the model's, cell by cell.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

import qe_nb
from qe_nb.exceptions import InputError, UnreliableThresholdWarning
from qe_nb.pipeline.model import QualityModel, fit, load_model

N_REF, N_NEW = 40, 20
SHAPE = (32, 40, 32)


def _cohort(tmp_path_factory, seed: int):
    root = tmp_path_factory.mktemp(f"cohort{seed}")
    ens = qe_nb.synthetic_cohort(root / "c", n_cases=N_REF + N_NEW, shape=SHAPE, images=False, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableThresholdWarning)
        scores = qe_nb.score(ens, n_jobs=1, progress=False)
    return ens, scores


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return _cohort(tmp_path_factory, seed=1)


def _split(scores):
    cases = [str(c) for c in scores["case"].values]
    return scores.sel(case=cases[:N_REF]), scores.sel(case=cases[N_REF:])


def _independent_alarms(ref: np.ndarray, new: np.ndarray, higher: np.ndarray, alpha: np.ndarray,
                        *, pool: str = "algorithm", scale: float = 1.0) -> np.ndarray:
    """Alarms of ``new`` (case, alg, label, metric) at median - alpha * MAD of ``ref``, plain numpy."""
    out = np.zeros(new.shape, bool)
    _, n_alg, n_lab, n_met = new.shape
    for a in range(n_alg):
        for lab in range(n_lab):
            for m in range(n_met):
                s = 1.0 if higher[m] else -1.0
                pool_values = ref[:, :, lab, m].ravel() if pool == "all" else ref[:, a, lab, m]
                finite = s * pool_values[np.isfinite(pool_values)]
                median = np.median(finite)
                mad = np.median(np.abs(finite - median)) * scale
                limit = median - alpha[a, lab, m] * mad
                x = new[:, a, lab, m]
                with np.errstate(invalid="ignore"):
                    out[:, a, lab, m] = ~np.isfinite(x) | (s * x < limit)
    return out


@pytest.mark.parametrize("setting", ["global", "by-label", "pool-all", "normal-mad"])
def test_alarms_of_new_cases_equal_median_minus_alpha_mad_of_the_reference(cohort, setting):
    _, scores = cohort
    ref, new = _split(scores)
    labels = [str(v) for v in scores["label"].values]
    algorithms = [str(v) for v in scores["algorithm"].values]
    metrics = [str(v) for v in scores["metric"].values]
    higher = np.array([qe_nb.METRICS[m].higher_is_better for m in metrics])
    alpha = np.full((len(algorithms), len(labels), len(metrics)), 0.1)
    kwargs: dict = {}
    if setting == "by-label":
        per_label = dict(zip(labels, [0.1, 0.5, -0.2]))
        kwargs = {"by": "label"}
        given: object = per_label
        for j, lab in enumerate(labels):
            alpha[:, j, :] = per_label[lab]
    else:
        given = 0.1
    if setting == "pool-all":
        kwargs = {"pool": "all"}
    if setting == "normal-mad":
        kwargs = {"mad_scale": "normal"}
    model = fit(ref, given, **kwargs)
    out = model.assess(new)
    ref_v = ref["similarity"].transpose("case", "algorithm", "label", "metric").values
    new_v = new["similarity"].transpose("case", "algorithm", "label", "metric").values
    expected = _independent_alarms(ref_v, new_v, higher, alpha, pool=kwargs.get("pool", "algorithm"),
                                   scale=1.4826 if setting == "normal-mad" else 1.0)
    got = out["alarms"].sel(algorithm=algorithms, label=labels, metric=metrics).values
    assert got.shape == (N_NEW, 5, 3, 2)  # 600 cells
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.mean() < 1  # both kinds of cells occur
    np.testing.assert_array_equal(out["risk"].values, expected.sum(axis=(1, 2, 3)))
    # and the same thresholds as qe_nb.thresholds of the reference
    xr.testing.assert_equal(
        model.thresholds.reset_coords(drop=True),
        qe_nb.thresholds(ref, model.alpha, **{k: v for k, v in kwargs.items() if k != "by"})
        .transpose("algorithm", "label", "metric").reset_coords(drop=True).drop_attrs(),
    )


def test_reference_summary_matches_alarms_of_the_reference(cohort):
    _, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    flags = qe_nb.alarms(ref, 0.1).transpose("case", "algorithm", "label", "metric")
    np.testing.assert_allclose(model.reference["alarm_rate"].values, flags.values.mean(axis=0))
    np.testing.assert_array_equal(model.reference["risk"].values, np.sort(flags.values.sum(axis=(1, 2, 3))))
    assert model.reference.attrs["n_cases"] == N_REF
    out = model.assess(new)
    ref_risk = flags.values.sum(axis=(1, 2, 3))
    expected = [100.0 * np.mean(ref_risk <= r) for r in out["risk"].values]
    np.testing.assert_allclose(out["percentile"].values, expected)
    # the reasons are the worklist's words for the same alarms
    worded = out["reasons"].values
    assert all((r == "") == (k == 0) for r, k in zip(worded, out["risk"].values))
    first = int(np.argmax(out["risk"].values))
    assert worded[first].count(";") + 1 == int(out["risk"].values[first])


def test_assess_scores_a_catalogue_with_the_models_settings(cohort):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    new_cases = [str(c) for c in new["case"].values]
    from_files = model.assess(ens, cases=new_cases[:4])
    from_scores = model.assess(new, cases=new_cases[:4])
    xr.testing.assert_equal(from_files["similarity"], from_scores["similarity"])
    xr.testing.assert_equal(from_files["alarms"], from_scores["alarms"])
    assert from_files["reasons"].values.tolist() == from_scores["reasons"].values.tolist()
    assert from_files.attrs["model_sha256"] == model.content_hash


def test_assess_label_maps_in_memory_equals_the_files(cohort):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    case = str(new["case"].values[0])
    maps = qe_nb.load_label_maps(ens, case)
    out = model.assess({str(a): maps.sel(algorithm=a).values for a in maps["algorithm"].values},
                       spacing=maps.attrs["spacing"], cases=[case])
    xr.testing.assert_allclose(out["similarity"], model.assess(new, cases=[case])["similarity"])
    with pytest.raises(InputError, match="spacing"):
        model.assess({str(a): maps.sel(algorithm=a).values for a in maps["algorithm"].values})
    with pytest.raises(InputError, match=r"lacking: \['unet-a'\].*None for a member"):
        model.assess({str(a): maps.sel(algorithm=a).values for a in maps["algorithm"].values if a != "unet-a"},
                     spacing=(1, 1, 1))


def test_save_load_round_trip(cohort, tmp_path):
    _, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, {"whole_tumor": 0.1, "tumor_core": 0.3, "enhancing_tumor": 0.0}, by="label")
    path = model.save(tmp_path / "model.json")
    text = path.read_text()
    assert text.startswith("{\n") and '"format_version": 1' in text  # human-readable
    loaded = load_model(path)
    xr.testing.assert_identical(loaded.thresholds, model.thresholds)
    xr.testing.assert_equal(loaded.alpha, model.alpha)
    assert loaded.by == ("label",)
    assert loaded.content_hash == model.content_hash == json.loads(text)["content_sha256"]
    assert loaded.to_dict() == model.to_dict()
    xr.testing.assert_identical(loaded.assess(new).drop_attrs(), model.assess(new).drop_attrs())
    assert not list(tmp_path.glob(".qe_nb-tmp-*"))
    with pytest.raises(AttributeError, match="read-only"):
        loaded.pool = "all"


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def _rehash(data):
    from qe_nb.core.frozen import content_hash

    data["content_sha256"] = content_hash(data)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", r"model file '.*model\.json' is not valid JSON .*truncated"),
        ("edit-threshold", r"model file '.*model\.json': its content does not match its content_sha256"),
        ("version", r"model file '.*model\.json' has format_version 2; this qe_nb reads version 1 only"),
        ("missing-field", r"model file '.*model\.json': the section 'calibration' lacks the field\(s\) \['pool'\]"),
        ("missing-section", r"model file '.*model\.json': the top level lacks the field\(s\) \['reference'\]"),
        ("not-a-model", r"model file '.*model\.json' is not a qe_nb model"),
        ("nan", r"model file '.*model\.json' is not valid JSON"),
        ("bad-grid", r"model file '.*model\.json': a field has the wrong shape or kind"),
        ("absent", r"model file '.*model\.json' does not exist"),
    ],
)
def test_damaged_model_files_are_refused(cohort, tmp_path, damage, message):
    _, scores = cohort
    ref, _ = _split(scores)
    path = fit(ref, 0.1).save(tmp_path / "model.json")
    if damage == "truncate":
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    elif damage == "edit-threshold":
        _rewrite(path, lambda d: d["calibration"]["thresholds"]["unet-a"]["whole_tumor"].update(dice=0.5))
    elif damage == "version":
        _rewrite(path, lambda d: (d.update(format_version=2), _rehash(d)))
    elif damage == "missing-field":
        _rewrite(path, lambda d: (d["calibration"].pop("pool"), _rehash(d)))
    elif damage == "missing-section":
        _rewrite(path, lambda d: (d.pop("reference"), _rehash(d)))
    elif damage == "not-a-model":
        _rewrite(path, lambda d: d.update(format="something"))
    elif damage == "nan":
        path.write_text(path.read_text().replace('"pool": "algorithm"', '"pool": NaN'))
    elif damage == "bad-grid":
        _rewrite(path, lambda d: (d["calibration"]["thresholds"]["unet-a"].pop("tumor_core"), _rehash(d)))
    elif damage == "absent":
        path.unlink()
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_settings_other_than_the_models_are_refused_naming_the_difference(cohort):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    with pytest.raises(InputError, match=r"fusion 'simple' \(the model's: 'mav'\)"):
        model.assess(new.assign_attrs(fusion="simple"))
    with pytest.raises(InputError, match=r"metrics \['dice'\] \(the model's: \['dice', 'hd95'\]\)"):
        model.assess(new.sel(metric=["dice"]))
    with pytest.raises(InputError, match=r"members .*lacking \['unet-a'\]"):
        model.assess(new.drop_sel(algorithm="unet-a"))
    with pytest.raises(InputError, match=r"labels \['whole_tumor', 'tumor_core'\]"):
        model.assess(new.sel(label=["whole_tumor", "tumor_core"]))
    with pytest.raises(InputError, match=r"similarity mode 'leave-one-out' \(the model's: 'fusion'\)"):
        model.assess(new.assign_attrs(similarity_mode="leave-one-out"))
    with pytest.raises(InputError, match=r"fusion 'staple'.*; distance units 'px'"):
        model.assess(new.assign_attrs(fusion="staple", distance_units="px"))
    relabelled = new.assign_coords(label_values=("label", ["1,2,4", "1,4", "1"]))
    with pytest.raises(InputError, match=r"label values enhancing_tumor=1 \(the model's: 4\)"):
        model.assess(relabelled)
    binary = qe_nb.open_ensemble(ens.attrs["root"], labels="binary", reference="{case}/reference.nii.gz")
    with pytest.raises(InputError, match=r"the catalogue does not match the model: labels \['foreground'\]"):
        model.assess(binary)
    # the order of members and metrics does not matter
    shuffled = new.isel(algorithm=[4, 3, 2, 1, 0], metric=[1, 0])
    xr.testing.assert_equal(model.assess(shuffled)["alarms"], model.assess(new)["alarms"])


def _copy_cases(ens, cases, dest):
    src = ens.attrs["root"]
    for case in cases:
        shutil.copytree(f"{src}/{case}", dest / case)


def test_missing_member_gives_nan_rows_that_alarm_and_a_bad_file_is_recorded(cohort, tmp_path):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    cases = [str(c) for c in new["case"].values[:4]]
    _copy_cases(ens, cases, tmp_path)
    (tmp_path / cases[1] / "nnunet-b.nii.gz").unlink()
    (tmp_path / cases[2] / "unet-a.nii.gz").write_bytes(b"not an image at all")
    catalogue = qe_nb.open_ensemble(tmp_path, labels=model.scheme, reference="{case}/reference.nii.gz")
    out = model.assess(catalogue)
    assert out["case"].values.tolist() == cases
    # the missing member: NaN rows that alarm, named once in the reasons; the case is not an error
    row = out["similarity"].sel(case=cases[1], algorithm="nnunet-b")
    assert np.isnan(row.values).all()
    assert out["alarms"].sel(case=cases[1], algorithm="nnunet-b").values.all()
    assert bool(out["missing"].sel(case=cases[1], algorithm="nnunet-b"))
    assert out["error"].sel(case=cases[1]).item() == ""
    assert "nnunet-b: no file (missing candidate, 6 alarms)" in out["reasons"].sel(case=cases[1]).item()
    # the bad file: recorded in `error` naming the case and member; the other cases assessed as before
    error = out["error"].sel(case=cases[2]).item()
    assert cases[2] in error and "unet-a" in error
    assert out["alarms"].sel(case=cases[2]).values.all()
    clean = model.assess(new, cases=[cases[0], cases[3]])
    xr.testing.assert_equal(out["alarms"].sel(case=[cases[0], cases[3]]), clean["alarms"])
    np.testing.assert_array_equal(out["risk"].sel(case=[cases[0], cases[3]]).values, clean["risk"].values)


def test_fit_refuses_bad_inputs(cohort):
    _, scores = cohort
    ref, _ = _split(scores)
    with pytest.raises(InputError, match=r"`alpha` must be a finite number, 'entropy'"):
        fit(ref, "high")
    with pytest.raises(InputError, match=r"needs `by` naming its one dim"):
        fit(ref, {"whole_tumor": 0.1})
    with pytest.raises(InputError, match=r"`alpha` has no value for label \['enhancing_tumor'\]"):
        fit(ref, {"whole_tumor": 0.1, "tumor_core": 0.2}, by="label")
    with pytest.raises(InputError, match=r"must be the scores Dataset of qe_nb.score"):
        fit(ref["similarity"], 0.1)
    with pytest.raises(InputError, match=r"`by` must be None or a subset"):
        fit(ref, 0.1, by="case")
    with pytest.raises(InputError, match=r"`pool` "):
        fit(ref, 0.1, pool="members")


def test_entropy_alpha_per_label_and_fit_from_a_file(cohort, tmp_path):
    _, scores = cohort
    ref, _ = _split(scores)
    qe_nb.save_scores(ref, tmp_path / "ref.nc")
    model = fit(tmp_path / "ref.nc", "entropy", by="label")
    assert model.alpha_method == "entropy" and model.by == ("label",)
    expected = qe_nb.calibrate(ref["similarity"], objective="entropy", by="label")
    np.testing.assert_array_equal(model.alpha.values, expected.values)
    assert isinstance(model, QualityModel)
    assert "per label" in repr(model)


def _degraded_assessments(model, ens, cases, member: str | None, shift: int = 3):
    """Assess ``cases`` from their label maps, ``member``'s masks shifted by ``shift`` voxels along x."""
    parts = []
    for case in cases:
        maps = qe_nb.load_label_maps(ens, case)
        arrays = {str(a): maps.sel(algorithm=a).values for a in maps["algorithm"].values}
        if member is not None:
            arrays[member] = np.roll(arrays[member], shift, axis=2)
        parts.append(model.assess(arrays, spacing=maps.attrs["spacing"], cases=[case]))
    return parts


def test_drift_flags_the_degraded_member_and_no_other(cohort):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    cases = [str(c) for c in new["case"].values]
    table = model.drift(_degraded_assessments(model, ens, cases, "nnunet-b"))
    assert table.attrs["flagged_members"] == ["nnunet-b"]
    flagged = table[table["drifted"]]
    assert set(flagged["algorithm"]) == {"nnunet-b"}
    assert (flagged["p_holm"] <= 0.01).all()
    assert (flagged["alarm_rate"] > flagged["reference_rate"]).all()
    assert all(w.startswith("nnunet-b: ") and "over the last 20 cases vs" in w for w in flagged["words"])
    # the median of the degraded member's Dice moved down in reference-MAD units
    dice = table[(table["algorithm"] == "nnunet-b") & (table["metric"] == "dice")]
    assert (dice["median_shift_mad"] < -1).all()
    assert table.attrs["n_cases"] == N_NEW
    # `last` takes the most recent cases only
    assert model.drift(_degraded_assessments(model, ens, cases[:5], "nnunet-b"), last=3).attrs["n_cases"] == 3


def test_undegraded_new_cases_flag_nothing(cohort, tmp_path_factory):
    for seed, (_ens, scores) in ((1, cohort), (2, _cohort(tmp_path_factory, seed=2))):
        ref, new = _split(scores)
        model = fit(ref, 0.1)
        table = model.drift(model.assess(new))
        assert not table["drifted"].any(), (seed, table.loc[table["p_holm"].idxmin(), "words"])
        assert table.attrs["flagged_members"] == []


def test_drift_leaves_failed_cases_out_and_checks_its_options(cohort):
    _, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    out = model.assess(new)
    out["error"] = out["error"].copy(data=np.array(["case broken"] + [""] * (N_NEW - 1), dtype=object))
    table = model.drift(out)
    assert table.attrs["n_failed"] == 1 and table.attrs["n_cases"] == N_NEW - 1
    with pytest.raises(InputError, match=r"`last` must be a positive int"):
        model.drift(out, last=0)
    with pytest.raises(InputError, match=r"`level` must be a number in \(0, 1\)"):
        model.drift(out, level=2)
    with pytest.raises(InputError, match=r"lacks 'alarms'"):
        model.drift(out.drop_vars("alarms"))


def test_a_catalogue_with_other_files_is_assessed_on_the_models_members(cohort):
    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    case = str(new["case"].values[0])
    with pytest.warns(qe_nb.QeNbWarning, match="takes \\['reference'\\] for algorithms"):
        everything = qe_nb.open_ensemble(ens.attrs["root"], labels=model.scheme)  # 'reference' caught as a member
    out = model.assess(everything, cases=[case])
    assert out["algorithm"].values.tolist() == list(model.algorithms)
    xr.testing.assert_equal(out["alarms"], model.assess(new, cases=[case])["alarms"])
    with pytest.raises(InputError, match=r"the catalogue does not match the model: members .*lacking \['unet-a'\]"):
        model.assess(everything.drop_sel(algorithm="unet-a"), cases=[case])


def test_drift_p_holm_is_holm_of_the_fisher_p_values(cohort):
    from qe_nb.core.drift import holm

    ens, scores = cohort
    ref, new = _split(scores)
    model = fit(ref, 0.1)
    table = model.drift(_degraded_assessments(model, ens, [str(c) for c in new["case"].values[:8]], "unet-a"))
    m = len(table)
    p = table["p_value"].to_numpy()
    order = np.argsort(p, kind="stable")
    expected = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    np.testing.assert_allclose(table["p_holm"].to_numpy()[order], expected)
    np.testing.assert_allclose(holm(p), table["p_holm"].to_numpy())
    assert (table["p_holm"] >= table["p_value"]).all()
    import scipy.stats

    row = table.iloc[1]
    k_ref = round(row["reference_rate"] * N_REF)
    fisher = scipy.stats.fisher_exact([[row["n_alarms"], row["n_cases"] - row["n_alarms"]], [k_ref, N_REF - k_ref]],
                                      alternative="greater").pvalue
    assert row["p_value"] == pytest.approx(fisher)
    assert row["p_binomial"] == pytest.approx(scipy.stats.binomtest(
        int(row["n_alarms"]), int(row["n_cases"]), k_ref / N_REF, alternative="greater").pvalue)
