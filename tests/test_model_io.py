"""Model files: safetensors round trip, sidecar and card, refusal of pickles, spec and checksum checks,
hashes stored in the file (integrity without a sidecar), files of format_version 1, re-saves."""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings

import pytest
import safetensors.torch
import torch

from coffea_hepfm import models
from coffea_hepfm.graph import GraphSpec
from coffea_hepfm.model import (
    ChecksumMismatch,
    ClassifierHead,
    GraphSpecMismatch,
    HEPFMClassifier,
    HEPFMNet,
    ModelFileError,
    MultilabelHead,
    UnsafeModelFile,
    load_backbone,
    load_model,
    read_metadata,
    save_model,
)
from coffea_hepfm.model.bench import random_graphs
from coffea_hepfm.model.integrity import INTEGRITY_KEY, UnverifiedModelFile, integrity_record

SPEC = GraphSpec().to_dict()
DIMS = (GraphSpec().n_node_features, GraphSpec().n_edge_features, GraphSpec().n_global_features)
META = {
    "class_names": ["ttbar", "ttH"],
    "task": "tth_vs_ttbar",
    "recipe": {"epochs": 3, "lr": 1e-3, "strategy": "full"},
    "data": {"n_train": 1000, "processes": ["tth", "ttbar"]},
    "metrics": {"auc": 0.81, "rejection_at_50": float("nan")},
    "reproduce": "coffea-hepfm finetune --from hepfm-pretrained --task tth_vs_ttbar --train-size 1000",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    clf = HEPFMClassifier(
        HEPFMNet(*DIMS, hidden=32, n_proc_steps=2), ClassifierHead(2, in_channels=32)
    ).eval()
    path = save_model(tmp_path_factory.mktemp("models") / "tth.safetensors", clf, SPEC, META)
    return path, clf


def test_round_trip(saved):
    path, clf = saved
    inp = random_graphs(20, *DIMS, seed=1)
    loaded = load_model(path)
    assert not loaded.module.training
    torch.testing.assert_close(loaded.module(*inp), clf(*inp), rtol=0, atol=0)
    assert loaded.class_names == ["ttbar", "ttH"] and loaded.kind == "classifier"
    assert loaded.meta["metrics"] == {"auc": 0.81, "rejection_at_50": None}  # NaN is not JSON
    assert loaded.meta["model_config"]["hidden"] == 32 and loaded.meta["model_config"]["n_outputs"] == 2
    probs, emb = loaded.scoring_module()(*inp)
    assert probs.shape == (20, 2) and emb.shape == (20, 32)
    backbone = load_backbone(path)
    assert isinstance(backbone, HEPFMNet) and backbone.training
    torch.testing.assert_close(backbone.eval()(*inp), clf.backbone(*inp), rtol=0, atol=0)


def test_files_are_plain_safetensors(saved):
    path, clf = saved
    # weights_only semantics: the file is readable by safetensors alone, with no code execution.
    tensors = safetensors.torch.load_file(str(path))
    assert set(tensors) == set(clf.state_dict())
    assert path.read_bytes()[8:9] == b"{"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == load_model(path).sha256 and len(sidecar["sha256"]) == 64
    assert sidecar["format"] == "coffea-hepfm-model" and sidecar["graph_spec"]["name"] == SPEC["name"]
    assert read_metadata(path)["task"] == "tth_vs_ttbar"
    card = path.with_suffix(".md").read_text()
    for text in (
        "## Intended use",
        "## Training data",
        "1000",
        "## Metrics",
        "0.81",
        "## Limitations",
        "coffea-hepfm finetune --from hepfm-pretrained",
        sidecar["sha256"],
    ):
        assert text in card


def test_save_rejects_bad_arguments(saved, tmp_path):
    _, clf = saved
    with pytest.raises(ModelFileError, match="class_names"):
        save_model(tmp_path / "m.safetensors", clf, SPEC, {"class_names": ["only-one"]})
    with pytest.raises(ModelFileError, match=".safetensors"):
        save_model(tmp_path / "m.pt", clf, SPEC, META)
    with pytest.raises(ModelFileError, match="graph spec"):
        save_model(tmp_path / "m.safetensors", clf, {"version": 1}, META)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_refuses_pickles_without_unpickling(saved, tmp_path):
    _, clf = saved
    torch_file = tmp_path / "model.safetensors"
    torch.save(clf, torch_file)  # a real torch zip with a pickled module inside
    with pytest.raises(UnsafeModelFile, match="never unpickles"):
        load_model(torch_file)

    marker = tmp_path / "executed"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps(Payload(), protocol=4))
    with pytest.raises(UnsafeModelFile):
        load_model(raw)
    with pytest.raises(UnsafeModelFile):
        load_backbone(raw)
    assert not marker.exists()


def test_refuses_foreign_and_broken_files(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(foreign), metadata={"other": "x"})
    with pytest.raises(ModelFileError, match="not a coffea-hepfm model file"):
        load_model(foreign)
    wrong = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file(
        {"w": torch.zeros(3)}, str(wrong), metadata={"hepfm": json.dumps({"format": "x"})}
    )
    with pytest.raises(ModelFileError, match="expected 'coffea-hepfm-model'"):
        load_model(wrong)
    text = tmp_path / "text.safetensors"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model(text)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")


def _rewrite(src, dst, meta: dict, seal: bool = True, sidecar: bool = False):
    """Write ``dst`` with the tensors of ``src`` and the metadata ``meta``: ``seal`` replaces the stored
    hashes with fresh ones (a legitimate writer), else ``meta`` is written as given (an editor); ``sidecar``
    writes a matching ``.json``."""
    tensors = safetensors.torch.load_file(str(src))
    if seal:
        meta = {k: v for k, v in meta.items() if k != INTEGRITY_KEY}
        meta[INTEGRITY_KEY] = integrity_record(meta, tensors)
    safetensors.torch.save_file(tensors, str(dst), metadata={"hepfm": json.dumps(meta)})
    if sidecar:
        digest = hashlib.sha256(dst.read_bytes()).hexdigest()
        dst.with_suffix(".json").write_text(json.dumps({**meta, "sha256": digest}))
    return dst


def _legacy(path, dst, sidecar: bool):
    """A format_version 1 file (written before hashes were stored) with the weights of ``path``."""
    meta = {k: v for k, v in read_metadata(path).items() if k != INTEGRITY_KEY} | {"format_version": 1}
    return _rewrite(path, dst, meta, seal=False, sidecar=sidecar)


def test_future_format_version_refused(saved, tmp_path):
    path, _ = saved
    meta = read_metadata(path) | {"format_version": 99}
    newer = tmp_path / "newer.safetensors"
    safetensors.torch.save_file(
        safetensors.torch.load_file(str(path)), str(newer), metadata={"hepfm": json.dumps(meta)}
    )
    with pytest.raises(ModelFileError, match="format_version 99"):
        load_model(newer)


def test_spec_mismatch_refused(saved):
    path, _ = saved
    other = SPEC | {"version": SPEC["version"] + 1}
    with pytest.raises(GraphSpecMismatch, match="version"):
        load_model(path, expected_spec=other)
    with pytest.raises(GraphSpecMismatch):
        load_backbone(path, expected_spec=SPEC | {"name": "someone-elses-graph"})
    with pytest.raises(GraphSpecMismatch, match="max_photons"):
        load_model(path, expected_spec=GraphSpec(max_photons=0))
    assert load_model(path, expected_spec=GraphSpec()).kind == "classifier"
    assert load_model(path, expected_spec=SPEC).spec == GraphSpec()


def test_file_from_other_spec_version_refused(saved, tmp_path):
    path, _ = saved
    meta = read_metadata(path)
    meta["graph_spec"] = meta["graph_spec"] | {"version": meta["graph_spec"]["version"] + 1}
    other = _rewrite(path, tmp_path / "other.safetensors", meta)  # a consistent file of another spec
    with pytest.raises(GraphSpecMismatch, match="version"):
        load_model(other)  # default: compared with this code's GraphSpec


def _tamper_weights(src, dst):
    data = bytearray(src.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor's data; the header stays valid
    dst.write_bytes(bytes(data))
    return dst


def _swap_class_names(src, dst):
    """The same file with the class names exchanged in the header (hashes left as stored)."""
    meta = read_metadata(src)
    meta["class_names"] = meta["class_names"][::-1]
    return _rewrite(src, dst, meta, seal=False)


def _model_info(path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    return CliRunner().invoke(app, ["model-info", str(path)])


@pytest.mark.parametrize("with_sidecar", [True, False], ids=["sidecar", "no-sidecar"])
@pytest.mark.parametrize(
    "tamper, what",
    [(_tamper_weights, "weights were modified"), (_swap_class_names, "metadata .* was edited")],
    ids=["weights", "class-names"],
)
def test_tampered_file_refused_with_and_without_sidecar(saved, tmp_path, tamper, what, with_sidecar):
    path, _ = saved
    copy = tamper(path, tmp_path / path.name)
    if with_sidecar:  # the original's sidecar: the whole-file sha256 differs too
        copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    assert copy.with_suffix(".json").exists() == with_sidecar
    for load in (load_model, load_backbone, read_metadata):
        with pytest.raises(ChecksumMismatch, match=f"{copy}: .*{what}"):
            load(copy)
    res = _model_info(copy)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: ChecksumMismatch: ") and str(copy) in lines[0]
    loaded = load_model(copy, verify=False)  # explicit opt-out still loads, and says so
    assert loaded.integrity == "skipped" and "not checked" in loaded.integrity_statement


def test_hashes_are_stored_and_canonical(saved, tmp_path):
    path, clf = saved
    meta = read_metadata(path)
    assert meta["format_version"] == 2 and meta[INTEGRITY_KEY]["scheme"] == "coffea-hepfm-sha256/1"
    # the stored weights hash is the canonical hash of the state dict, independent of file layout
    assert meta[INTEGRITY_KEY] == integrity_record(meta, clf.state_dict())
    loaded = load_model(path)
    assert (
        loaded.integrity == "embedded+sidecar"
        and loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    alone = tmp_path / path.name  # the same bytes without a sidecar: still verified
    alone.write_bytes(path.read_bytes())
    assert load_model(alone).integrity == "embedded"
    no_record = {k: v for k, v in meta.items() if k != INTEGRITY_KEY}
    stripped = _rewrite(path, tmp_path / "stripped.safetensors", no_record, seal=False)
    with pytest.raises(ChecksumMismatch, match="without its 'integrity' record"):
        load_model(stripped)
    assert "verified: sha256 of the weights and of the metadata" in _model_info(alone).output


def test_format_version_1_files_still_load(saved, tmp_path):
    path, clf = saved
    inp = random_graphs(5, *DIMS, seed=2)
    with_sidecar = _legacy(path, tmp_path / "v1.safetensors", sidecar=True)
    loaded = load_model(with_sidecar)  # no warning: the sidecar's sha256 covers weights and header
    assert loaded.integrity == "sidecar" and "sidecar sha256 only" in loaded.integrity_statement
    torch.testing.assert_close(loaded.module(*inp), clf(*inp), rtol=0, atol=0)
    info = _model_info(with_sidecar)
    assert info.exit_code == 0 and "sidecar sha256 only" in info.output
    swapped = _copy_sidecar(with_sidecar, _swap_class_names(with_sidecar, tmp_path / "v1x.safetensors"))
    with pytest.raises(ChecksumMismatch, match="v1x.safetensors has sha256 .* sidecar v1x.json records"):
        load_model(swapped)  # a tampered v1 file is caught by its sidecar
    alone = _legacy(path, tmp_path / "alone.safetensors", sidecar=False)
    with pytest.warns(UnverifiedModelFile, match=r"alone\.safetensors: NOT verified.*coffea-hepfm ship"):
        assert load_model(alone).integrity == "unverified"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedModelFile)
        assert load_model(alone).integrity == "unverified"  # said once per file and process


def _copy_sidecar(src, dst):
    """Put ``src``'s sidecar next to ``dst`` (a stale sidecar, as after editing ``dst``)."""
    dst.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    return dst


def test_multilabel_model_scores_with_sigmoid(tmp_path):
    torch.manual_seed(3)
    clf = HEPFMClassifier(HEPFMNet(*DIMS, hidden=16, n_proc_steps=1), MultilabelHead(3, in_channels=16))
    labels = {"class_names": ["top", "higgs", "W"], "task": "truth_content"}
    loaded = load_model(save_model(tmp_path / "ml.safetensors", clf, SPEC, labels))
    assert loaded.multilabel
    probs, _ = torch.jit.script(loaded.scoring_module())(*random_graphs(5, *DIMS))
    torch.testing.assert_close(probs, torch.sigmoid(loaded.module(*random_graphs(5, *DIMS))))


def test_shipped_model_registry():
    names = models.available()
    assert names == sorted(names)
    for name in names:
        assert models.path(name).is_file()
        loaded = load_model(name)  # shipped models load offline, safely, and match this code's spec
        assert loaded.integrity in ("embedded+sidecar", "sidecar"), (name, loaded.integrity)  # verified
        assert loaded.kind in ("classifier", "multiclass", "multilabel", "projection")
        assert len(loaded.class_names) == (0 if loaded.kind == "projection" else loaded.module.n_outputs)
    with pytest.raises(models.UnknownModel, match="available"):
        models.path("no-such-model")
    with pytest.raises(models.UnknownModel):
        load_model("no-such-model")


def test_model_info_command(saved, tmp_path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app

    path, _ = saved
    ok = CliRunner().invoke(app, ["model-info", str(path)])
    assert ok.exit_code == 0 and '"tth_vs_ttbar"' in ok.output
    bad = tmp_path / "bad.safetensors"
    torch.save({"w": torch.zeros(2)}, bad)
    refused = CliRunner().invoke(app, ["model-info", str(bad)])
    assert refused.exit_code == 2 and "error:" in refused.output and "pickle" in refused.output
    assert HEPFMNet.from_spec(GraphSpec()).get_config()["n_global"] == GraphSpec().n_global_features


def test_resave_records_what_where_and_why(saved, tmp_path):
    from typer.testing import CliRunner

    from coffea_hepfm.cli import app
    from coffea_hepfm.model import resave_model

    path, clf = saved
    src_meta = read_metadata(path)
    dst = tmp_path / "shipped.safetensors"
    resave_model(path, dst, "ship under the task's name", limitations="only a test")
    meta = read_metadata(dst)
    # what training recorded is kept: the re-save does not become the creation time
    for key in ("created", "recipe", "data", "metrics", "reproduce", "coffea_hepfm_version", "class_names"):
        assert meta[key] == src_meta[key], key
    (entry,) = meta["resaves"]
    assert (
        entry["from"] == str(path) and entry["from_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    assert entry["reason"] == "ship under the task's name" and entry["changed"] == ["limitations"]
    assert entry["command"].startswith(f"coffea-hepfm ship {path} {dst} --reason ")
    assert meta["limitations"] == "only a test" and entry["at"] >= src_meta["created"]
    assert meta[INTEGRITY_KEY]["weights_sha256"] == src_meta[INTEGRITY_KEY]["weights_sha256"]  # same weights
    card = dst.with_suffix(".md").read_text()
    reproduce = card.split("## Reproduce")[1]
    assert reproduce.index(src_meta["reproduce"]) < reproduce.index(entry["command"])  # the route, in order
    assert f"from `{path}`" in card and "when first saved" in card  # no training time recorded in META
    # the CLI is that route: a second re-save is appended, with the command as typed
    again = tmp_path / "again.safetensors"
    res = CliRunner().invoke(app, ["ship", str(dst), str(again), "--reason", "second copy"])
    assert res.exit_code == 0, res.output
    resaves = read_metadata(again)["resaves"]
    assert [r["reason"] for r in resaves] == ["ship under the task's name", "second copy"]
    assert resaves[1]["command"] == f"coffea-hepfm ship {dst} {again} --reason 'second copy'"
    assert resaves[1]["from_sha256"] == hashlib.sha256(dst.read_bytes()).hexdigest()
    refused = CliRunner().invoke(app, ["ship", str(dst), str(tmp_path / "x.safetensors"), "--reason", " "])
    assert refused.exit_code == 2 and refused.output.startswith(
        "error: ModelFileError: a re-save needs a reason"
    )
    assert not (tmp_path / "x.safetensors").exists()
