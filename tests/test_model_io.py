"""Model files: safetensors round trip, sidecar and card, refusal of pickles, spec and checksum checks."""

from __future__ import annotations

import json
import pickle

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
    other = tmp_path / "other.safetensors"
    safetensors.torch.save_file(
        safetensors.torch.load_file(str(path)), str(other), metadata={"hepfm": json.dumps(meta)}
    )
    with pytest.raises(GraphSpecMismatch, match="version"):
        load_model(other)  # default: compared with this code's GraphSpec


def test_checksum_mismatch_refused(saved, tmp_path):
    path, _ = saved
    copy = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor's data; the header stays valid
    copy.write_bytes(bytes(data))
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ChecksumMismatch, match="sha256"):
        load_model(copy)
    assert load_model(copy, verify=False).module is not None  # explicit opt-out still loads


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
