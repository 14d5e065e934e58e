"""Print the bad-input table: each kind of broken input, and what the user sees.

Runs every fault of ``tests/bad_inputs.py`` through ``qe_nb.score`` (the recorded per-case
error, or the warning), then the argument and manifest errors through the public functions,
and writes the table as Markdown to ``docs/bad-input.md`` (and prints it).

    python docs/bad_input_table.py
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import qe_nb  # noqa: E402
from qe_nb.data.limits import voxel_limit  # noqa: E402
from tests.bad_inputs import ALGORITHMS, FAULTS, make_cohort, victim  # noqa: E402


def _short(text: str, folder: Path) -> str:
    text = text.replace(str(folder), "…")
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def _open(root: Path, suffix: str = ".nii.gz"):
    return qe_nb.open_ensemble(root, masks=f"{{case}}/{{algorithm}}{suffix}",
                               reference=f"{{case}}/reference{suffix}", labels="brats")


def _caught(call) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except qe_nb.QeNbError as exc:
            return f"{type(exc).__name__}: {exc}"
    messages = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, qe_nb.QeNbWarning)]
    return " / ".join(messages) or "(nothing)"


def file_rows(base: Path) -> list[tuple[str, str]]:
    rows = []
    clean = {s: make_cohort(base / f"clean{s}", suffix=s) for s in sorted({f.suffix for f in FAULTS})}
    for fault in FAULTS:
        root = base / fault.id
        shutil.copytree(clean[fault.suffix], root, symlinks=True)
        fault.apply(victim(root, fault.suffix))
        limit = voxel_limit(fault.max_voxels) if fault.max_voxels else contextlib.nullcontext()
        with warnings.catch_warnings(record=True) as caught, limit:
            warnings.simplefilter("always")
            scores = qe_nb.score(_open(root, fault.suffix), metrics=("dice", "hd95"), progress=False, n_jobs=1)
        error = str(scores["error"].sel(case="case-03").item())
        warned = [str(w.message) for w in caught if fault.warning and re.search(fault.warning, str(w.message))]
        if error and warned:
            seen = (f"warning: `{warned[0]}`; then the case is recorded as failed, its scores NaN, "
                    f"other cases intact: `{error}`")
        elif error:
            seen = f"case recorded as failed, its scores NaN, other cases intact: `{error}`"
        elif fault.outcome == "nan-row":
            seen = "the missing candidate's similarity is NaN (so it raises its alarms); the case is scored"
        else:
            warned = [str(w.message) for w in caught if issubclass(w.category, qe_nb.LabelValueWarning)]
            seen = f"case scored; warning: `{warned[0]}`" if warned else "case scored"
        rows.append((fault.description, _short(seen, base)))
    root = base / "resample"
    shutil.copytree(clean[".nii.gz"], root, symlinks=True)
    next(f for f in FAULTS if f.id == "other-spacing").apply(victim(root))
    scores = qe_nb.score(_open(root), metrics=("dice",), progress=False, n_jobs=1, resample=True)
    rows.append(("same shape, other spacing, with `resample=True`",
                 "brought onto the first candidate's grid (nearest neighbour) and scored" if
                 str(scores["error"].sel(case="case-03").item()) == "" else "not scored"))
    root = base / "no-candidates"
    shutil.copytree(clean[".nii.gz"], root, symlinks=True)
    for name in ALGORITHMS:
        (root / "case-01" / f"{name}.nii.gz").unlink()
    scores = qe_nb.score(_open(root), metrics=("dice",), progress=False, n_jobs=1)
    rows.append(("a case with a reference but no candidates",
                 _short(f"case recorded as failed: `{scores['error'].sel(case='case-01').item()}`", base)))
    root = base / "duplicates"
    shutil.copytree(clean[".nii.gz"], root, symlinks=True)
    shutil.copy(root / "case-00" / "alg-a.nii.gz", root / "case-00" / "alg-a.nii")
    rows.append(("duplicate case ids (`alg-a.nii` beside `alg-a.nii.gz`)", _short("raised before any work: `" + _caught(
        lambda: qe_nb.open_ensemble(root, masks="{case}/{algorithm}", labels="brats")) + "`", base)))
    rows.append(("a pattern without `{algorithm}`", _short("raised before any work: `" + _caught(
        lambda: qe_nb.open_ensemble(root, masks="{case}.nii.gz")) + "`", base)))
    rows.append(("a folder with no matching files", _short("raised before any work: `" + _caught(
        lambda: qe_nb.open_ensemble(root, masks="{case}/{algorithm}.mha")) + "`", base)))
    return rows


def _picture(array: np.ndarray, path: Path, *, vector: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))


def picture_rows(base: Path) -> list[tuple[str, str]]:
    """2-D masks (PNG, 0/255): one broken file in a clean cohort, scored as a user would."""
    mask = np.zeros((30, 40), np.uint8)
    mask[5:12, 6:20] = 255
    red = np.stack([mask, np.zeros_like(mask), np.zeros_like(mask)], -1)
    faults = {
        "a mask saved as JPEG (lossy)": lambda p: (p.unlink(), _picture(mask, p.with_suffix(".jpg"))),
        "an RGB mask whose channels differ (red outlines)": lambda p: _picture(red, p, vector=True),
        "an RGBA mask whose alpha varies": lambda p: _picture(np.stack([mask] * 3 + [mask], -1), p, vector=True),
        "an RGB mask with equal channels (gray saved as colour)":
            lambda p: _picture(np.stack([mask] * 3, -1), p, vector=True),
        "a 2-D NIfTI mask (mm) beside PNG masks (px)":
            lambda p: (p.unlink(), _picture(mask, p.with_name(p.stem + ".nii.gz"))),
    }
    rows = []
    for i, (what, apply) in enumerate(faults.items()):
        root = base / f"picture-{i}"
        for case in ("case-00", "case-01", "case-02", "case-03"):
            _picture(mask, root / case / "reference.png")
            for name in ALGORITHMS:
                _picture(mask, root / case / f"{name}.png")
        apply(root / "case-03" / "alg-b.png")
        ens = qe_nb.open_ensemble(root, masks="{case}/{algorithm}", reference="{case}/reference.png")
        scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
        error = str(scores["error"].sel(case="case-03").item())
        seen = f"case recorded as failed, its scores NaN, other cases intact: `{error}`" if error else "case scored"
        rows.append((what, _short(seen, base)))
    return rows


def argument_rows() -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    sim = xr.DataArray(rng.random((6, 2, 1, 2)), dims=("case", "algorithm", "label", "metric"),
                       coords={"case": [f"c{i}" for i in range(6)], "algorithm": ["a", "b"],
                               "label": ["t"], "metric": ["dice", "hd95"]})
    flat = sim.copy()
    flat.loc[{"metric": "dice", "algorithm": "a"}] = 0.9
    rows = [
        ("α that is NaN", _caught(lambda: qe_nb.alarms(sim, float("nan")))),
        ("α that is inf", _caught(lambda: qe_nb.alarms(sim, float("inf")))),
        ("α that is a string", _caught(lambda: qe_nb.alarms(sim, "high"))),
        ("scores missing a dim", _caught(lambda: qe_nb.alarms(sim.isel(label=0, drop=True), 0.1))),
        ("fewer than three cases", _caught(lambda: qe_nb.alarms(sim.isel(case=[0, 1]), 0.1))),
        ("a metric identical for every case (MAD 0)", _caught(lambda: qe_nb.alarms(flat, 0.1))),
        ("an unknown metric", _caught(lambda: qe_nb.compute_metrics(np.ones(3, bool), np.ones(3, bool), ("hd99",)))),
        ("an unknown fusion method", _caught(lambda: qe_nb.fuse([np.zeros(3, np.uint8)], method="vote"))),
    ]
    return [(what, f"`{seen}`") for what, seen in rows]


def manifest_rows(base: Path) -> list[tuple[str, str]]:
    from qe_nb.data.manifest import parse_manifest

    good = (REPO / "data_manifest.yml").read_text()
    cases = [
        ("a manifest that is not YAML", "datasets: [\n  - name: x\n    kind: : :\n"),
        ("a manifest with an unknown key", good.replace("datasets:", "datasetz: 1\ndatasets:", 1)),
        ("a manifest entry missing a field", "version: 1\ndatasets:\n  - name: x\n    kind: local\n"),
        ("a manifest file path outside the cache",
         good.replace("path: TCGA-DU-7294/segmentation/hnfnetv1-20.nii.gz", "path: ../../etc/passwd", 1)),
    ]
    rows = [(what, f"`{_caught(lambda t=text: parse_manifest(t, source='data_manifest.yml'))}`") for what, text in cases]
    return rows


#: Inputs whose handling needs a server, a signal or a changed file between two runs: the
#: message is asserted by the linked test (run them to see it), not reproduced by this script.
HOSTILE_ROWS: list[tuple[str, str, str]] = [
    ("a BINARY DICOM SEG whose segments overlap",
     "`case 'case-03', algorithm 'alg-b': cannot read '…/ov.dcm': its segments overlap (a voxel belongs to more than one segment), so it has no single label per voxel; …`",
     "tests/test_dicom_seg.py::test_overlapping_segments_are_refused"),
    ("a FRACTIONAL (probabilistic) DICOM SEG",
     "`… cannot read '…/fr.dcm': it is a FRACTIONAL (probabilistic) SEG with values between 0 and the maximum; threshold it into a BINARY SEG first.`",
     "tests/test_dicom_seg.py::test_probabilistic_fractional_seg_is_refused"),
    ("a CT slice, a truncated SEG or a text file given as a `.dcm` mask",
     "`… it is a DICOM 'CT Image Storage' file, not a segmentation (DICOM SEG, …)` / `… it is truncated: the file ends before its pixel data.` / `… it is not a DICOM file (no 'DICM' after the 128-byte preamble).`; only that case fails",
     "tests/test_dicom_seg.py::test_ct_slice_truncated_junk_and_missing_files"),
    ("a `.dcm` mask without the `dicom` extra",
     "`… reading DICOM segmentations needs highdicom and pydicom (…); install them with: pip install \"qe-nb[dicom]\".`",
     "tests/test_dicom_seg.py::test_missing_extra_names_the_install_command"),
    ("a model file cut off half-way, or with a threshold edited by hand",
     "`model file '…/model.json' is not valid JSON …` / `model file '…/model.json': its content does not match its content_sha256 …`; nothing half-loaded",
     "tests/test_model.py::test_damaged_model_files_are_refused"),
    ("a model file of a newer format",
     "`model file '…/model.json' has format_version 2; this qe_nb reads version 1 only …`",
     "tests/test_model.py::test_damaged_model_files_are_refused"),
    ("new cases scored with another fusion or without a member of the model",
     "`the new cases were scored with settings other than the model's: fusion 'simple' (the model's: 'mav') …`",
     "tests/test_model.py::test_settings_other_than_the_models_are_refused_naming_the_difference"),
    ("a request to `qe-nb app` with `Host: evil.example` (DNS rebinding)", "403 `Host 'evil.example:8866' is not this server`",
     "tests/test_access.py::test_a_foreign_host_is_refused"),
    ("the app's kernel websocket opened from `Origin: http://evil.example`", "403",
     "tests/test_access.py::test_a_foreign_websocket_origin_is_refused"),
    ("`qe-nb app --host 0.0.0.0` without a token", "a token is generated and printed with the URL; `--token ''` is refused (`needs a token`)",
     "tests/test_triage_app.py::test_cli_app_for_a_team_prints_a_new_token"),
    ("the review database locked by another writer during a save",
     "red `not saved: … database is locked …`; the verdict is kept and *retry saving* saves it",
     "tests/test_triage_app.py::test_a_locked_database_fails_the_save_visibly_and_a_retry_saves_it"),
    ("the review database's folder renamed away while the app runs",
     "red `the review database '…/reviews.db' is gone (its folder removed or renamed?); nothing was written …`; the retry saves once it is back",
     "tests/test_triage_app.py::test_a_database_whose_folder_is_gone_fails_the_save_and_a_retry_saves_once_it_is_back"),
    ("`<img src=x onerror=alert(1)>` as a metric name, case id, note or reviewer name", "shown as text",
     "tests/test_triage_app.py::test_html_from_files_and_people_is_escaped"),
    ("a case folder whose name is not UTF-8 (`lat\\xe9n`)",
     "scored and saved; the name is escaped in the NetCDF (`lat%E9n`, attr `name_escape`) and restored by `load_scores`; the cache works",
     "tests/test_cache_keys.py::test_non_utf8_case_folder_is_scored_saved_and_restored"),
    ("a candidate replaced by same-size content, its mtime restored (`touch -r`)",
     "recomputed, never served from the cache (the key holds size, mtime_ns, ctime_ns, device and inode)",
     "tests/test_cache_keys.py::test_files_key_notices_same_size_content_with_mtime_restored"),
    ("a scores file whose `quality` lacks its `metric` coordinate",
     "``scores file '…q.nc': `quality` has dims ('case', 'label', 'm'); expected ('case', 'label', 'metric'). …``",
     "tests/test_cache_keys.py::test_load_scores_refuses_quality_without_metric"),
    ("`qe-nb worklist s.nc | head -1`", "the first line, exit 0, no BrokenPipeError",
     "tests/test_cli.py::test_worklist_into_a_closed_pipe_is_not_an_error"),
    ("a server that sends one byte every few seconds",
     "`data set 'hostile': file 'sub/trickle': download stopped: … was still downloading when the overall timeout ran out (N bytes received); nothing was kept. …`",
     "tests/test_fetch_limits.py::test_trickling_server_stops_at_the_overall_timeout"),
    ("an endless stream for a 16-byte file", "`… sent more than the 16 bytes allowed; nothing was kept. …`",
     "tests/test_fetch_limits.py::test_endless_stream_stops_at_the_manifest_size"),
    ("SIGTERM during a download", "exit 143, no file left in the cache",
     "tests/test_fetch_limits.py::test_sigterm_during_a_download_leaves_nothing"),
    ("a 474-byte YAML alias bomb",
     "`m.yml: YAML aliases expand the manifest to more than 100,000 values (it holds 41 as written); …` in under 1 s",
     "tests/test_manifest.py::test_yaml_alias_bomb_is_refused_at_once"),
    ("manifest `path: \".\"`", "``dataset 'mine', files[0]: `path` '.' must name a file inside the data set's folder …``",
     "tests/test_manifest.py::test_remote_file_path_must_name_a_file"),
    ("manifest files `x` and `x/y`", "`file 'x/y': lies inside 'x', which is listed as a file …`",
     "tests/test_manifest.py::test_remote_files_that_nest_in_each_other_are_refused"),
    ("`QE_NB_DATA_URL=file:///etc/`",
     "`QE_NB_DATA_URL must be an http:// or https:// URL; got 'file:///etc/'. Fix it or unset it.`",
     "tests/test_manifest.py::test_data_url_environment_is_checked_like_base_url"),
    ("YAML merge keys (`<<:`)", "accepted", "tests/test_manifest.py::test_yaml_merge_keys_work"),
]


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="qe_nb-bad-input-"))
    try:
        rows = file_rows(base) + picture_rows(base) + argument_rows() + manifest_rows(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = ["# Bad input: what the user sees", "",
             "Made by `docs/bad_input_table.py`; every row is also a test in `tests/` that asserts the message.",
             "", "| input | what the user sees |", "| --- | --- |"]
    lines += [f"| {what} | {seen} |" for what, seen in rows]
    lines += ["", "## Hostile inputs", "",
              "Inputs that need a server, a signal or a file changed between two runs; each row's "
              "message is asserted by its test.", "",
              "| input | what the user sees | test |", "| --- | --- | --- |"]
    lines += [f"| {what} | {seen} | `{test}` |" for what, seen, test in HOSTILE_ROWS]
    text = "\n".join(lines) + "\n"
    (REPO / "docs" / "bad-input.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
