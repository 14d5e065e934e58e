"""data_manifest.yml: schema errors, resolving data sets, downloads verified against SHA256SUMS."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from qe_nb.data import manifest as mf
from qe_nb.exceptions import InputError, ManifestError

from .conftest import BRATS_ALGORITHMS, BRATS_EXAMPLE, REPO, SHARED

HAVE_ENSEMBLE = importlib.util.find_spec("qe_nb.ensemble") is not None
HAVE_SYNTH = importlib.util.find_spec("qe_nb.synth") is not None


def sha256sums() -> dict[str, str]:
    """The shared folder's own SHA256SUMS (path -> hash), read independently of our code."""
    out = {}
    for line in (BRATS_EXAMPLE / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        out[path.removeprefix("./")] = digest
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# the shipped manifest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (mf.MANIFEST_ENV, mf.CACHE_ENV, mf.DATA_URL_ENV):
        monkeypatch.delenv(var, raising=False)
    # requests must not send 127.0.0.1 to a proxy from the environment
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_repository_manifest_has_the_promised_entries():
    entries = mf.load_manifest()
    assert list(entries)[:3] == ["demo", "demo-lung", "brats-example"]
    demo, lung = entries["demo"].generator, entries["demo-lung"].generator
    assert (demo["kind"], demo["n_cases"], demo["n_algorithms"]) == ("glioma", 68, 5)
    assert (lung["kind"], lung["n_cases"], lung["n_algorithms"]) == ("lung", 46, 3)
    manual = {n for n, e in entries.items() if e.kind == "manual"}
    assert {"brats-2021", "covid19-20", "lidc-idri", "qubiq"} <= manual
    assert "synapse.org" in entries["brats-2021"].url
    assert "covid-segmentation.grand-challenge.org" in entries["covid19-20"].url
    for entry in entries.values():
        assert entry.description and entry.licence and entry.citation
        entry.label_scheme()  # every scheme resolves


def test_brats_example_entry_matches_the_shared_checksums(brats_case_dir):
    entry = mf.load_manifest()["brats-example"]
    assert {f.path: f.sha256 for f in entry.files} == sha256sums()
    assert entry.base_url == (
        "https://raw.githubusercontent.com/BrainLesion/tutorials/"
        "a2d3fffe821e0dfd3bb62520985239324eaeda9a/BraTS-Toolkit/data/TCGA-DU-7294/"
        "TCGA-DU-7294_brainles/"
    )
    assert "a2d3fffe821e0dfd3bb62520985239324eaeda9a" in (BRATS_EXAMPLE / "README.md").read_text()
    urls = {f.path: f.url_path for f in entry.files}
    assert urls["TCGA-DU-7294/images/flair.nii.gz"] == "raw_bet/TCGA-DU-7294_fla_bet.nii.gz"
    assert urls["TCGA-DU-7294/images/t1c.nii.gz"] == "raw_bet/TCGA-DU-7294_t1c_bet.nii.gz"
    for algorithm in BRATS_ALGORITHMS:
        assert urls[f"TCGA-DU-7294/segmentation/{algorithm}.nii.gz"] == f"segmentation/{algorithm}.nii.gz"


def test_manifest_found_through_environment(tmp_path, monkeypatch):
    own = tmp_path / "m.yml"
    own.write_text(yaml.safe_dump({"version": 1, "datasets": [minimal_entry(name="only")]}))
    monkeypatch.setenv(mf.MANIFEST_ENV, str(own))
    assert list(mf.load_manifest()) == ["only"]
    assert mf.find_manifest() == own


def test_manifest_environment_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(mf.MANIFEST_ENV, str(tmp_path / "gone.yml"))
    with pytest.raises(ManifestError, match=r"QE_NB_MANIFEST points at .*gone\.yml.*not a file"):
        mf.load_manifest()


def test_manifest_default_is_the_repository_file():
    assert mf.find_manifest() == REPO / "data_manifest.yml"


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match=r"`path`: no manifest at .*nope\.yml"):
        mf.load_manifest(tmp_path / "nope.yml")


# --------------------------------------------------------------------------------------------
# schema errors


def minimal_entry(**changes):
    entry = {
        "name": "mine",
        "description": "d",
        "licence": "l",
        "citation": "c",
        "kind": "local",
        "path": "/data/mine",
        "layout": {"masks": "{case}/{algorithm}.nii.gz"},
        "labels": "binary",
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not _DROP}


_DROP = object()

REMOTE = {
    "kind": "remote",
    "path": _DROP,
    "base_url": "https://example.org/data",
    "files": [{"path": "a/b.nii.gz", "sha256": "ab" * 32}],
}
SYNTH = {
    "kind": "synthetic",
    "path": _DROP,
    "generator": {"kind": "glioma", "n_cases": 3, "n_algorithms": 2, "shape": [8, 8, 8], "seed": 0},
}


def parse(obj) -> dict:
    return mf.parse_manifest(yaml.safe_dump(obj, sort_keys=False), source="m.yml")


def one(**changes) -> dict:
    return parse({"version": 1, "datasets": [minimal_entry(**changes)]})


def test_valid_entries_of_every_kind():
    remote = one(**REMOTE)["mine"]
    assert remote.base_url == "https://example.org/data/"  # a trailing slash is added
    assert remote.files[0].url_path == "a/b.nii.gz"  # defaults to `path`
    synth = one(**SYNTH)["mine"]
    assert synth.generator["shape"] == (8, 8, 8)
    manual = one(kind="manual", path=_DROP, layout=_DROP, url="https://x.org", instructions="ask")["mine"]
    assert manual.layout is None
    assert one(labels={"lesion": 1, "core": [1, 2]})["mine"].label_scheme().names == ("lesion", "core")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version: 1\ndatasets: [\n  - name: x\n", r"m\.yml is not valid YAML: .* at line \d+, column \d+"),
        ("version: 1\ndatasets:\n  - name: a\n    name: b\n", r"not valid YAML: found duplicate key 'name' at line 4"),
        ("- a\n- b\n", r"m\.yml must be a mapping with keys \['version', 'datasets'\]; got list"),
        ("", r"m\.yml must be a mapping .*; got null"),
        ("version: 1\ndatasets: []\nextra: 1\n", r"m\.yml: unknown key 'extra'"),
        ("datasets: []\n", r"m\.yml: missing required key 'version'"),
        ("version: 2\ndatasets: []\n", r"unsupported `version` 2; this qe_nb reads version 1"),
        ("version: 1\ndatasets: {a: 1}\n", r"`datasets` must be a list of data set entries; got dict"),
        ("version: 1\ndatasets: [3]\n", r"datasets\[0\] must be a mapping; got int"),
    ],
)
def test_malformed_files(text, match):
    with pytest.raises(ManifestError, match=match):
        mf.parse_manifest(text, source="m.yml")


def test_yaml_error_shows_the_offending_line():
    text = "version: 1\ndatasets:\n  - name: demo\n    kind: [local\n"
    with pytest.raises(ManifestError, match=r"line \d+, column \d+: "):
        mf.parse_manifest(text, source="m.yml")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"name": _DROP}, r"datasets\[0\]: missing required key 'name'"),
        ({"name": "Has Space"}, r"datasets\[0\]: `name` must be lower-case .*got 'Has Space'"),
        ({"shape": 3}, r"dataset 'mine': unknown key 'shape'; expected one of \["),
        ({"base_url": "https://x.org"}, r"dataset 'mine': key 'base_url' is not allowed for kind 'local'"),
        ({"licence": _DROP}, r"dataset 'mine': missing required key 'licence'"),
        ({"layout": _DROP}, r"dataset 'mine': missing required key 'layout'"),
        ({"kind": _DROP}, r"dataset 'mine': missing required key 'kind'; expected one of \['local'"),
        ({"kind": "ftp"}, r"dataset 'mine': unknown kind 'ftp'; expected one of \['local', 'manual', 'remote', 'synthetic', 'build'\]"),
        ({"description": 3}, r"dataset 'mine': `description` must be a non-empty string; got 3 \(int\)"),
        ({"citation": " "}, r"dataset 'mine': `citation` must be a non-empty string"),
        ({"labels": "bratz"}, r"dataset 'mine': `labels`: Unknown label scheme 'bratz'; expected one of"),
        ({"labels": {"lesion": -1}}, r"dataset 'mine': `labels`: .*positive integers; got -1"),
        ({"labels": 4}, r"dataset 'mine': `labels` must be a scheme name or a mapping .*got 4 \(int\)"),
        ({"homepage": "www.x.org"}, r"dataset 'mine': `homepage` must be an http:// or https:// URL; got 'www\.x\.org'"),
        ({"layout": "x"}, r"dataset 'mine', `layout`: must be a mapping with `masks`"),
        ({"layout": {"masks": "{case}.nii.gz"}}, r"`layout`: `masks` pattern '\{case\}\.nii\.gz' lacks the placeholder \{algorithm\}"),
        # (an `images` pattern without {modality} is one modality since issue 13; {case} is still needed)
        ({"layout": {"masks": "{case}/{algorithm}.nii", "images": "img/{modality}.nii"}}, r"`images` pattern .* lacks the placeholder \{case\}"),
        ({"layout": {"masks": "../{case}/{algorithm}.nii"}}, r"`masks` '\.\./\{case\}/\{algorithm\}\.nii' must be a relative path"),
        ({"layout": {"masks": "{case}/{algorithm}.nii", "extra": 1}}, r"dataset 'mine', `layout`: unknown key 'extra'"),
    ],
)
def test_entry_errors_name_the_data_set_and_the_key(changes, match):
    with pytest.raises(ManifestError, match=match):
        one(**changes)


@pytest.mark.parametrize(
    ("generator", "match"),
    [
        ({"n_cases": "68"}, r"`generator`: `n_cases` must be an integer >= 1; got '68' \(str\)"),
        ({"n_cases": True}, r"`n_cases` must be an integer >= 1; got True \(bool\)"),
        ({"n_algorithms": 1}, r"`n_algorithms` must be an integer >= 2; got 1"),
        ({"seed": -1}, r"`seed` must be an integer >= 0; got -1"),
        ({"shape": [8, 8]}, r"`shape` must be null or a list of 3 positive integers \(z, y, x\); got \[8, 8\]"),
        ({"shape": [8, 0, 8]}, r"`shape` must be null or a list of 3 positive integers"),
        ({"kind": "liver"}, r"unknown generator kind 'liver'; expected one of \['glioma', 'lung'\]"),
        ({"sede": 1}, r"dataset 'mine', `generator`: unknown key 'sede'"),
    ],
)
def test_generator_errors(generator, match):
    gen = {**SYNTH["generator"], **generator}
    with pytest.raises(ManifestError, match=match):
        one(**{**SYNTH, "generator": gen})


def test_generator_missing_seed():
    gen = {k: v for k, v in SYNTH["generator"].items() if k != "seed"}
    with pytest.raises(ManifestError, match=r"dataset 'mine', `generator`: missing required key 'seed'"):
        one(**{**SYNTH, "generator": gen})


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ([], r"dataset 'mine': `files` must be a non-empty list"),
        ([{"path": "/etc/passwd", "sha256": "ab" * 32}], r"files\[0\]: `path` '/etc/passwd' must be a relative path inside the data set's folder"),
        ([{"path": "a/../../b.nii", "sha256": "ab" * 32}], r"`path` 'a/\.\./\.\./b\.nii' must be a relative path .*no '\.\.'"),
        ([{"path": "C:/data/b.nii", "sha256": "ab" * 32}], r"`path` 'C:/data/b\.nii' must be a relative path"),
        ([{"path": "a\\b.nii", "sha256": "ab" * 32}], r"must be a relative path .*'/'-separated"),
        ([{"path": "~/b.nii", "sha256": "ab" * 32}], r"`path` '~/b\.nii' must be a relative path"),
        ([{"path": "b.nii", "sha256": "abc"}], r"file 'b\.nii': `sha256` must be 64 hexadecimal characters; got 'abc' \(3 characters\)"),
        ([{"path": "b.nii", "sha256": "g" * 64}], r"file 'b\.nii': `sha256` must be 64 hexadecimal characters; got 'g{64}' \(64 characters\)"),
        ([{"path": "b.nii", "sha256": 12}], r"`sha256` must be 64 hexadecimal characters"),
        ([{"path": "b.nii"}], r"files\[0\]: missing required key 'sha256'"),
        ([{"path": "b.nii", "sha256": "ab" * 32, "md5": "x"}], r"files\[0\]: unknown key 'md5'"),
        ([{"path": "b.nii", "sha256": "ab" * 32, "url_path": "../x"}], r"file 'b\.nii': `url_path` '\.\./x' must be a relative path"),
        ([{"path": "b.nii", "sha256": "ab" * 32}, {"path": "b.nii", "sha256": "cd" * 32}], r"file 'b\.nii': listed twice"),
    ],
)
def test_remote_file_errors(files, match):
    with pytest.raises(ManifestError, match=match):
        one(**{**REMOTE, "files": files})


def test_remote_base_url_must_be_http():
    with pytest.raises(ManifestError, match=r"`base_url` must be an http:// or https:// URL; got 'ftp://x'"):
        one(**{**REMOTE, "base_url": "ftp://x"})


def test_uppercase_sha256_is_accepted_and_normalised():
    entry = one(**{**REMOTE, "files": [{"path": "b.nii", "sha256": "AB" * 32}]})["mine"]
    assert entry.files[0].sha256 == "ab" * 32


def test_schema_ships_with_the_package_and_editors_find_it():
    """The JSON Schema is package data, accepts the repository's manifest on its own (as an
    editor would check it) and is what data_manifest.yml's yaml-language-server line names."""
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("qe_nb.data").joinpath("manifest.schema.json").read_text())
    assert schema == mf.manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    text = (REPO / "data_manifest.yml").read_text()
    jsonschema.validate(yaml.safe_load(text), schema)
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (REPO / first.split("$schema=", 1)[1].strip()).resolve() == (REPO / "qe_nb/data/manifest.schema.json").resolve()
    assert list(mf.KINDS) == schema["$defs"]["entry"]["properties"]["kind"]["enum"]


def test_offending_values_are_shortened_in_messages():
    with pytest.raises(ManifestError, match=r"`description` must be a non-empty string; got \[0, 1, 2, 3, 4, 5, \.\.\.\] \(list\)") as caught:
        one(description=list(range(100_000)))
    assert len(str(caught.value)) < 200
    with pytest.raises(ManifestError, match=r"`homepage` must be an http:// or https:// URL; got 'x+\.\.\.x+'\.$"):
        one(homepage="x" * 10_000)


def test_key_of_another_kind_lists_what_the_kind_takes():
    with pytest.raises(ManifestError, match=r"dataset 'mine': key 'files' is not allowed for kind 'local'; a 'local' entry takes \['citation', 'description', 'homepage', 'kind', 'labels', 'layout', 'licence', 'name', 'path'\]\.$"):
        one(files=[])


def test_a_file_that_is_not_a_mapping():
    with pytest.raises(ManifestError, match=r"dataset 'mine': files\[0\] must be a mapping with `path` and `sha256`; got str"):
        one(**{**REMOTE, "files": ["a.nii"]})


def test_duplicate_data_set_names():
    with pytest.raises(ManifestError, match=r"dataset 'mine' is defined twice"):
        parse({"version": 1, "datasets": [minimal_entry(), minimal_entry()]})


def test_local_path_relative_to_the_manifest(tmp_path):
    (tmp_path / "data").mkdir()
    file = tmp_path / "m.yml"
    file.write_text(yaml.safe_dump({"version": 1, "datasets": [minimal_entry(path="data")]}))
    entries = mf.load_manifest(file)
    assert entries["mine"].path == tmp_path / "data"
    assert mf.fetch_dataset("mine", manifest=entries) == tmp_path / "data"


# --------------------------------------------------------------------------------------------
# resolving


def test_unknown_data_set_lists_the_known_ones():
    with pytest.raises(ManifestError, match=r"Unknown data set 'dmeo'; expected one of \['demo', 'demo-lung'"):
        mf.fetch_dataset("dmeo")


def test_manual_data_set_raises_with_instructions():
    with pytest.raises(ManifestError, match=r"'covid19-20' cannot be downloaded automatically \(kind 'manual'\): Register on grand-challenge\.org.* Source: https://covid-segmentation"):
        mf.fetch_dataset("covid19-20")


def test_missing_local_folder(tmp_path):
    entries = one(path=str(tmp_path / "gone"))
    with pytest.raises(ManifestError, match=r"data set 'mine' \(kind 'local'\): folder .*gone' does not exist; fix `path` in m\.yml"):
        mf.fetch_dataset("mine", manifest=entries)


def test_base_url_only_for_remote(tmp_path):
    with pytest.raises(InputError, match=r"`base_url` applies to remote data sets only; 'mine' is 'local'"):
        mf.fetch_dataset("mine", manifest=one(path=str(tmp_path)), base_url="http://x/")


def test_bad_manifest_argument():
    with pytest.raises(InputError, match=r"`manifest` must be a path, the result of load_manifest\(\) or None; got int"):
        mf.fetch_dataset("demo", manifest=3)


def test_local_shared_copy_is_the_real_case(brats_case_dir):
    assert mf.fetch_dataset("brats-example-shared").resolve() == BRATS_EXAMPLE.resolve()


def test_cache_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(mf.CACHE_ENV, str(tmp_path / "c"))
    assert mf.default_cache() == tmp_path / "c"
    monkeypatch.delenv(mf.CACHE_ENV)
    assert mf.default_cache().name == "qe_nb"


# --------------------------------------------------------------------------------------------
# downloads from a real HTTP server serving ../shared/data


@pytest.fixture
def data_server(brats_case_dir):
    """http.server over SHARED/data on 127.0.0.1; records every request path; shut down after."""
    requests: list[str] = []
    root = str(SHARED / "data")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=root, **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's name
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/", requests=requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_remote_through_mirror_verifies_and_caches(data_server, tmp_path, monkeypatch):
    monkeypatch.setenv(mf.DATA_URL_ENV, data_server.url)
    cache = tmp_path / "cache"
    root = mf.fetch_dataset("brats-example", cache=cache)
    assert root == cache / "brats-example"
    expected = sha256sums()
    assert all_files(root) == sorted(expected)
    assert {p: file_sha256(root / p) for p in expected} == expected
    assert sorted(data_server.requests) == sorted(f"/brats-example/{p}" for p in expected)

    # a second fetch finds every file with the right checksum and asks the server nothing
    n = len(data_server.requests)
    assert mf.fetch_dataset("brats-example", cache=cache) == root
    assert len(data_server.requests) == n == 11

    # a corrupted cached file is detected and fetched again
    (root / "TCGA-DU-7294/segmentation/isen-20.nii.gz").write_bytes(b"garbage")
    mf.fetch_dataset("brats-example", cache=cache)
    assert data_server.requests[n:] == ["/brats-example/TCGA-DU-7294/segmentation/isen-20.nii.gz"]
    assert file_sha256(root / "TCGA-DU-7294/segmentation/isen-20.nii.gz") == expected["TCGA-DU-7294/segmentation/isen-20.nii.gz"]


def test_fetch_remote_with_base_url_argument(data_server, tmp_path):
    root = mf.fetch_dataset("brats-example", cache=tmp_path, base_url=data_server.url + "brats-example")
    assert {p: file_sha256(root / p) for p in sha256sums()} == sha256sums()
    assert len(data_server.requests) == 11


def tampered_manifest(tmp_path: Path, path: str, digest: str) -> dict:
    entry = mf.load_manifest()["brats-example"]
    files = [{"path": f.path, "sha256": digest, "url_path": f.url_path} for f in entry.files if f.path == path]
    return parse(
        {
            "version": 1,
            "datasets": [
                {
                    "name": "brats-example",
                    "description": "d",
                    "licence": "l",
                    "citation": "c",
                    "kind": "remote",
                    "base_url": entry.base_url,
                    "files": files,
                    "layout": {"masks": "{case}/segmentation/{algorithm}.nii.gz"},
                    "labels": "brats-regions",
                }
            ],
        }
    )


def test_checksum_mismatch_names_the_file_and_leaves_nothing(data_server, tmp_path, monkeypatch):
    monkeypatch.setenv(mf.DATA_URL_ENV, data_server.url)
    path = "TCGA-DU-7294/images/t1.nii.gz"
    actual = sha256sums()[path]
    wrong = "0" * 64
    entries = tampered_manifest(tmp_path, path, wrong)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ManifestError, match=rf"file '{path}' downloaded from http://127\.0\.0\.1:\d+/brats-example/{path} has sha256 {actual}, expected {wrong}; the download was deleted"):
        mf.fetch_dataset("brats-example", manifest=entries, cache=cache)
    assert data_server.requests == [f"/brats-example/{path}"]
    assert list(cache.rglob("*")) == []  # no file, no partial download, no empty folders


def test_download_failure_is_a_manifest_error(data_server, tmp_path, monkeypatch):
    monkeypatch.setenv(mf.DATA_URL_ENV, data_server.url + "nowhere/")
    cache = tmp_path / "cache"
    with pytest.raises(ManifestError, match=r"could not download file 'TCGA-DU-7294/segmentation/hnfnetv1-20\.nii\.gz' from http://127\.0\.0\.1:\d+/nowhere/brats-example/.*404.*QE_NB_DATA_URL"):
        mf.fetch_dataset("brats-example", cache=cache)
    assert not cache.exists() or list(cache.rglob("*")) == []


def test_invalid_base_url_argument(tmp_path):
    with pytest.raises(InputError, match=r"`base_url` must be an http:// or https:// URL; got 'shared/data'"):
        mf.fetch_dataset("brats-example", cache=tmp_path, base_url="shared/data")


# --------------------------------------------------------------------------------------------
# synthetic data sets


def test_synthetic_generated_once_and_reused(tmp_path, monkeypatch):
    calls = []

    def fake_cohort(path, **kw):
        calls.append(kw)
        (Path(path) / "case-000").mkdir(parents=True)
        (Path(path) / "case-000" / "a.nii.gz").write_bytes(b"x")

    monkeypatch.setattr(mf, "_synthetic_cohort", lambda: fake_cohort)
    entries = one(**SYNTH)
    root = mf.fetch_dataset("mine", manifest=entries, cache=tmp_path)
    assert root == tmp_path / "mine"
    assert calls == [{"kind": "glioma", "n_cases": 3, "n_algorithms": 2, "shape": (8, 8, 8), "seed": 0, "progress": False}]
    assert mf.fetch_dataset("mine", manifest=entries, cache=tmp_path) == root
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left

    # other parameters -> generated again, replacing the old cohort
    entries = one(**{**SYNTH, "generator": {**SYNTH["generator"], "seed": 1}})
    mf.fetch_dataset("mine", manifest=entries, cache=tmp_path)
    assert len(calls) == 2 and calls[1]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_synthetic_failure_leaves_no_partial_cohort(tmp_path, monkeypatch):
    def broken(path, **kw):
        Path(path).mkdir(parents=True)
        (Path(path) / "half.nii.gz").write_bytes(b"x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(mf, "_synthetic_cohort", lambda: broken)
    with pytest.raises(RuntimeError, match="disk full"):
        mf.fetch_dataset("mine", manifest=one(**SYNTH), cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (HAVE_SYNTH and HAVE_ENSEMBLE), reason="qe_nb.synth / qe_nb.ensemble not written yet")
def test_open_small_synthetic_data_set(tmp_path):
    entries = one(**{**SYNTH, "layout": {"masks": "{case}/{algorithm}.nii.gz", "reference": "{case}/reference.nii.gz", "images": "{case}/images/{modality}.nii.gz"}, "labels": "brats-regions", "generator": {**SYNTH["generator"], "shape": [24, 28, 24]}})
    ds = mf.open_dataset("mine", manifest=entries, cache=tmp_path)
    assert ds.sizes["case"] == 3 and ds.sizes["algorithm"] == 2
    assert ds.attrs["dataset"] == "mine"
    assert all(ds["reference"].values != "")


# --------------------------------------------------------------------------------------------
# open_dataset


@pytest.mark.skipif(not HAVE_ENSEMBLE, reason="qe_nb.ensemble (open_ensemble) not written yet")
def test_open_downloaded_brats_example(data_server, tmp_path, monkeypatch):
    monkeypatch.setenv(mf.DATA_URL_ENV, data_server.url)
    ds = mf.open_dataset("brats-example", cache=tmp_path)
    assert ds.attrs["dataset"] == "brats-example"
    assert list(ds["case"].values) == ["TCGA-DU-7294"]
    assert sorted(ds["algorithm"].values) == sorted(BRATS_ALGORITHMS)
    assert sorted(ds["modality"].values) == ["flair", "t1", "t1c", "t2"]
    assert list(ds["label"].values) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    # the fused files beside the candidates are not candidates
    assert all("fusion" not in p for p in ds["mask"].values.ravel())


@pytest.mark.skipif(not HAVE_ENSEMBLE, reason="qe_nb.ensemble (open_ensemble) not written yet")
def test_open_dataset_layout_override(brats_case_dir):
    ds = mf.open_dataset("brats-example-shared", images=None, labels="brats")
    assert "modality" not in ds.dims
    assert list(ds["label"].values) == ["necrosis", "edema", "enhancing"]


def test_open_dataset_unknown_keyword():
    with pytest.raises(InputError, match=r"unexpected keyword\(s\) \['mask'\]"):
        mf.open_dataset("demo", mask="x")


def test_open_dataset_manual_raises_before_opening():
    with pytest.raises(ManifestError, match=r"'lidc-idri' cannot be downloaded automatically"):
        mf.open_dataset("lidc-idri")


# --------------------------------------------------------------------------------------------
# hostile manifests (issue 15)

BOMB = """version: 1
datasets:
  - name: bomb
    kind: local
    path: /tmp
    licence: l
    citation: c
    labels: binary
    layout: {masks: "{case}/{algorithm}.nii.gz"}
    description: &i [&h [&g [&f [&e [&d [&c [&b [&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"],*a,*a,*a,*a,*a,*a,*a,*a],*b,*b,*b,*b,*b,*b,*b,*b],*c,*c,*c,*c,*c,*c,*c,*c],*d,*d,*d,*d,*d,*d,*d,*d],*e,*e,*e,*e,*e,*e,*e,*e],*f,*f,*f,*f,*f,*f,*f,*f],*g,*g,*g,*g,*g,*g,*g,*g],*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_at_once():
    import time

    start = time.perf_counter()
    with pytest.raises(ManifestError, match=r"m\.yml: YAML aliases expand the manifest to more than [\d,]+ values \(it holds \d+ as written\); write the values out"):
        mf.parse_manifest(BOMB, source="m.yml")
    assert time.perf_counter() - start < 1.0


def test_recursive_yaml_alias_is_refused():
    text = BOMB.replace(BOMB.splitlines()[-1], "    description: &r [*r]")
    with pytest.raises(ManifestError, match=r"m\.yml: a YAML alias refers to itself"):
        mf.parse_manifest(text, source="m.yml")


def test_yaml_merge_keys_work():
    text = """version: 1
datasets:
  - &base
    name: first
    description: d
    licence: l
    citation: c
    kind: local
    path: /data/first
    layout: {masks: "{case}/{algorithm}.nii.gz"}
    labels: binary
  - <<: *base
    name: second
    path: /data/second
"""
    entries = mf.parse_manifest(text, source="m.yml")
    assert list(entries) == ["first", "second"]
    assert entries["second"].path.as_posix() == "/data/second"
    assert entries["second"].licence == "l"
    with pytest.raises(ManifestError, match=r"found duplicate key 'name'"):
        mf.parse_manifest(text.replace("    path: /data/second", "    name: third"), source="m.yml")


def test_messages_never_show_a_huge_value():
    big = "x" * 1_000_000
    for changes in ({"name": big.upper()}, {"description": [big] * 3}, {"kind": "remote", "path": _DROP,
                    "base_url": "https://example.org/", "files": [{"path": "../" + big, "sha256": "ab" * 32}]}):
        with pytest.raises(ManifestError) as info:
            one(**changes)
        assert len(str(info.value)) < 600, str(info.value)[:200]
    with pytest.raises(ManifestError) as info:
        mf.fetch_dataset(big, manifest=one())
    assert len(str(info.value)) < 600


@pytest.mark.parametrize("path", [".", "./", "a/.", "a//b", "a/./b"])
def test_remote_file_path_must_name_a_file(path):
    with pytest.raises(ManifestError, match=r"dataset 'mine', files\[0\]: `path` .* must name a file inside the data set's folder"):
        one(**{**REMOTE, "files": [{"path": path, "sha256": "ab" * 32}]})


def test_remote_files_that_nest_in_each_other_are_refused():
    files = [{"path": "x", "sha256": "ab" * 32}, {"path": "x/y", "sha256": "cd" * 32}]
    with pytest.raises(ManifestError, match=r"dataset 'mine', file 'x/y': lies inside 'x', which is listed as a file"):
        one(**{**REMOTE, "files": files})
    with pytest.raises(ManifestError, match=r"dataset 'mine', file 'x': lies inside 'x', which is listed as a file|file 'x/y'"):
        one(**{**REMOTE, "files": files[::-1]})


@pytest.mark.parametrize("url", ["file:///etc/", "ftp://example.org/", "example.org/data"])
def test_data_url_environment_is_checked_like_base_url(url, tmp_path, monkeypatch):
    monkeypatch.setenv(mf.DATA_URL_ENV, url)
    with pytest.raises(InputError, match=r"QE_NB_DATA_URL must be an http:// or https:// URL; got '" + url.replace(".", r"\.")):
        mf.fetch_dataset("mine", manifest=one(**REMOTE), cache=tmp_path)
    assert not (tmp_path / "mine").exists()
