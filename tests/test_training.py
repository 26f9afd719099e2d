"""Training pipeline on real simulated samples: dataset, truth, batches, augmentations, pretrain, finetune,
evaluate, CKA, and the shipped tth_vs_ttbar model."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import torch

from coffea_hepfm.graph import GraphBatch, GraphSpec
from coffea_hepfm.training.augment import Augmenter
from coffea_hepfm.training.dataset import DatasetError, build_dataset, finite_event_mask, read_process
from coffea_hepfm.training.table import load_classes, make_batch, table_from_record
from coffea_hepfm.training.truth import TRUTH_LABELS

SPEC = GraphSpec()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small graphs: one intra-op thread is faster than two, and far faster on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_dir(sim_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    build_dataset(sim_dir, out, ["ttbar", "tth", "zjets"])
    return out


@pytest.fixture(scope="module")
def table(train_dir):
    return load_classes(train_dir, ["tth", "ttbar", "zjets"])


@pytest.fixture(scope="module")
def backbone_file(train_dir, tmp_path_factory):
    from coffea_hepfm.training.pretrain import pretrain

    out = tmp_path_factory.mktemp("models") / "backbone.safetensors"
    pretrain(train_dir, out, task="multiclass", epochs=2, batch_size=64, progress=False)
    return out


def test_dataset_contents(train_dir, sim_files):
    meta = json.loads((train_dir / "dataset.json").read_text())
    assert meta["graph_spec"] == SPEC.to_dict()
    for process in ("ttbar", "tth", "zjets"):
        rows = read_process(train_dir, process)
        info = meta["processes"][process]
        assert info["events"] == len(rows) and info["dropped_nonfinite"] == 0
        assert len(rows) + info["dropped_nonfinite"] == 200
        assert set(ak.to_numpy(rows.label).tolist()) == {process}
        assert np.array_equal(ak.to_numpy(rows.row), np.arange(len(rows)))
        assert finite_event_mask(rows).all()
    # The graph spec must match: a dataset dir is never silently mixed.
    with pytest.raises(DatasetError, match="another graph spec"):
        build_dataset(sim_files["ttbar"][0].parent.parent, train_dir, ["ttbar"], spec=GraphSpec(max_jets=3))


def test_truth_labels(train_dir):
    frac = {
        p: {f: float(np.mean(read_process(train_dir, p).truth[f])) for f in TRUTH_LABELS}
        for p in ("ttbar", "tth", "zjets")
    }
    assert frac["ttbar"]["top"] == 1.0 and frac["ttbar"]["higgs"] == 0.0 and frac["ttbar"]["bquark"] == 1.0
    assert frac["tth"]["top"] == 1.0 and frac["tth"]["higgs"] == 1.0
    assert frac["zjets"]["z"] == 1.0 and frac["zjets"]["top"] == 0.0 and frac["zjets"]["higgs"] == 0.0


def test_nonfinite_events_are_refused_and_counted(train_dir):
    rows = read_process(train_dir, "tth")[:20]
    nodes = ak.to_numpy(ak.flatten(rows.nodes, axis=1)).copy()
    nodes[3, 0] = np.nan  # one feature of one node of some event
    counts = ak.to_numpy(ak.num(rows.nodes, axis=1))
    bad = ak.with_field(rows, ak.unflatten(nodes, counts), "nodes")
    mask = finite_event_mask(bad)
    assert mask.sum() == 19 and not mask[np.searchsorted(np.cumsum(counts), 3, side="right")]
    with pytest.raises(DatasetError, match="1 events with non-finite"):
        table_from_record(bad, 0, ["tth"])


def test_batch_matches_graph_module(train_dir, table):
    idx = np.array([5, 0, 250, 420, 3])
    mine = make_batch(table, idx, SPEC)
    rows = ak.concatenate([read_process(train_dir, p) for p in ("tth", "ttbar", "zjets")])[idx]
    ref = GraphBatch.from_record(rows[["nodes", "globals"]], SPEC).to_torch("cpu")
    for a, b in zip(mine, ref, strict=True):
        assert a.shape == b.shape and torch.allclose(a.to(b.dtype), b, atol=1e-5)


def _edges(table, idx, aug=None, seed=0):
    x, ei, ea, u, batch = make_batch(table, idx, SPEC, aug, np.random.default_rng(seed))
    return x.numpy(), ei.numpy(), ea.numpy(), u.numpy()


def test_augmentations_keep_what_they_should(table):
    idx = np.arange(0, len(table), 7)
    names = SPEC.node_features
    x0, ei0, ea0, u0 = _edges(table, idx)
    # rotation in phi: all edge features (delta-eta, delta-phi, delta-R, pair mass) unchanged
    x1, ei1, ea1, u1 = _edges(table, idx, Augmenter(SPEC, ops=("rotate_phi",)))
    assert np.array_equal(ei0, ei1) and not np.allclose(
        x0[:, names.index("sin_phi")], x1[:, names.index("sin_phi")]
    )
    dphi = np.mod(ea1[:, 1] - ea0[:, 1] + np.pi, 2 * np.pi) - np.pi  # wrapped: +-pi are the same angle
    assert np.allclose(ea0[:, [0, 2, 3]], ea1[:, [0, 2, 3]], atol=2e-3) and np.allclose(dphi, 0, atol=2e-3)
    # longitudinal boost: delta-eta between non-MET objects unchanged, MET untouched, E >= pT still
    x2, ei2, ea2, _ = _edges(table, idx, Augmenter(SPEC, ops=("boost_z",), max_boost=1.0))
    met = x0[:, names.index("is_met")] > 0.5
    pair = ~met[ei0[0]] & ~met[ei0[1]]
    assert np.allclose(ea0[pair, 0], ea2[pair, 0], atol=1e-4) and np.allclose(ea0[:, 1], ea2[:, 1], atol=1e-4)
    assert not np.allclose(x0[~met, names.index("eta")], x2[~met, names.index("eta")])
    assert np.array_equal(x0[met], x2[met])
    assert (x2[:, names.index("log_energy")] >= x2[:, names.index("log_pt")] - 1e-5).all()
    # eta reflection: delta-R and pair masses unchanged
    _, _, ea3, _ = _edges(table, idx, Augmenter(SPEC, ops=("reflect_eta",)))
    assert np.allclose(ea0[:, 2:], ea3[:, 2:], atol=1e-3) and np.allclose(
        np.abs(ea0[:, 0]), np.abs(ea3[:, 0])
    )
    # smearing: directions unchanged, momenta changed, HT follows the jets
    x4, _, _, u4 = _edges(table, idx, Augmenter(SPEC, ops=("smear",), smear_sigma=0.1))
    for col in ("eta", "sin_phi", "cos_phi"):
        assert np.array_equal(x0[:, names.index(col)], x4[:, names.index(col)])
    assert not np.allclose(x0[:, names.index("log_pt")], x4[:, names.index("log_pt")])
    assert not np.allclose(
        u0[:, SPEC.global_features.index("log_ht")], u4[:, SPEC.global_features.index("log_ht")]
    )
    # object dropout: fewer nodes, every MET node kept, counts consistent
    sub = table.subset(idx)
    x5, counts5, _ = Augmenter(SPEC, ops=("drop_objects",), drop_prob=0.5)(
        sub.x, sub.counts, sub.u, np.random.default_rng(1)
    )
    assert len(x5) < len(sub.x) and counts5.sum() == len(x5)
    assert (x5[:, names.index("is_met")] > 0.5).sum() == met.sum()


def test_pretrain_reduces_loss_and_contrastive_loss(table):
    import torch.nn.functional as F

    from coffea_hepfm.training.pretrain import build_pretrain_model, nt_xent

    torch.manual_seed(0)
    model = build_pretrain_model(SPEC, "multiclass", 3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = np.arange(0, len(table), 3)
    batch, y = make_batch(table, idx, SPEC), torch.from_numpy(table.y[idx])
    losses = []
    # Up to 100 full-batch steps: with graph spec v2 features some initialisations sit near ln(3) (uniform
    # prediction) for ~40 steps before learning (measured: seed 0 reaches 0.36 x the start by step 100).
    for _ in range(100):
        opt.zero_grad()
        loss = F.cross_entropy(model(*batch), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if losses[-1] < 0.7 * losses[0]:
            break
    assert losses[-1] < 0.7 * losses[0]
    z = torch.randn(16, 8)
    assert float(nt_xent(z, z + 0.01 * torch.randn(16, 8))) < float(nt_xent(z, torch.randn(16, 8)))


def _pretrain_loss(model, task: str, val) -> float:
    """The test's own validation loss: BCE on the truth labels (multilabel), or NT-Xent between two fixed
    augmented views of each event (contrastive)."""
    import torch.nn.functional as F

    from coffea_hepfm.training.pretrain import nt_xent

    idx = np.arange(len(val))
    with torch.no_grad():
        if task == "multilabel":
            return float(
                F.binary_cross_entropy_with_logits(
                    model(*make_batch(val, idx, SPEC)), torch.from_numpy(val.truth)
                )
            )
        views = [
            model(*make_batch(val, idx, SPEC, Augmenter(SPEC), np.random.default_rng(k))) for k in (5, 6)
        ]
        return float(nt_xent(*views))


@pytest.mark.parametrize("task, n_out", [("multilabel", len(TRUTH_LABELS)), ("contrastive", 32)])
def test_pretrain_other_tasks_learn_and_save(train_dir, tmp_path, task, n_out):
    from coffea_hepfm.model import load_model
    from coffea_hepfm.training.dataset import read_meta
    from coffea_hepfm.training.pretrain import (
        build_pretrain_model,
        pretrain,
        pretraining_process_names,
        split_validation,
    )

    out = tmp_path / f"{task}.safetensors"
    info = pretrain(train_dir, out, task=task, epochs=6, batch_size=64, val_fraction=0.25, progress=False)
    loaded = load_model(out)
    assert loaded.kind == {"multilabel": "multilabel", "contrastive": "projection"}[task]
    # the validation events pretrain used, and the network it started from (seed 0)
    table = load_classes(
        train_dir,
        pretraining_process_names(train_dir),
        fold="pretrain",
        downstream_every=read_meta(train_dir)["downstream_every"],
    )
    _, val = split_validation(table, 0.25, 0)
    assert len(val) == info["data"]["val_events"]
    torch.manual_seed(0)
    untrained = build_pretrain_model(SPEC, task, n_out).eval()
    before, after = _pretrain_loss(untrained, task, val), _pretrain_loss(loaded.module, task, val)
    print(f"{task}: validation loss {before:.4f} untrained, {after:.4f} pretrained ({len(val)} events)")
    assert after < 0.9 * before  # measured: 0.76 -> 0.56 (multilabel BCE), 5.05 -> 2.72 (NT-Xent)
    if task == "multilabel":  # deterministic: the stored loss is the saved model's
        assert info["metrics"]["val_loss"] == pytest.approx(after, rel=1e-4)
    # parameters the command line cannot give: the exact Python call is recorded
    assert loaded.meta["reproduce"].startswith(
        "import torch; torch.set_num_threads(1)\nfrom coffea_hepfm.training.pretrain import pretrain\n"
    )
    assert (
        "val_fraction=0.25" in loaded.meta["reproduce"]
        and loaded.meta["created"] == info["training"]["finished_at"]
    )


def _auc(model, table) -> float:
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm.training.evaluate import signal_scores

    return float(roc_auc_score(table.y == 0, signal_scores(model, table, SPEC)))


def _backbone_digest(module) -> str:
    from coffea_hepfm.model.integrity import weights_digest

    return weights_digest(module.state_dict())


def test_finetune_records_what_it_measured(train_dir, backbone_file, tmp_path):
    import shlex

    from coffea_hepfm.model import load_backbone, load_model
    from coffea_hepfm.model.checks import sha256_file
    from coffea_hepfm.training.finetune import build_finetune_model, finetune

    # The fine-tuning model starts from the pretrained backbone's weights.
    model = build_finetune_model(backbone_file, SPEC)
    ref = load_backbone(backbone_file).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.backbone.state_dict().items())
    out = tmp_path / "tth.safetensors"
    info = finetune(
        train_dir, "tth_vs_ttbar", 60, pretrained=backbone_file, out=out, max_epochs=20, progress=False
    )
    assert info["data"]["n_train"] == 60
    loaded = load_model(out)
    assert loaded.class_names == ["ttH", "ttbar"] and loaded.meta["recipe"]["from"] == str(backbone_file)
    # the stored metrics are those of the saved weights, on the recorded splits
    splits = info["splits"]
    assert loaded.meta["metrics"]["auc"] == pytest.approx(_auc(loaded.module, splits.test), abs=1e-6)
    assert loaded.meta["metrics"]["val_auc"] == pytest.approx(_auc(loaded.module, splits.val), abs=1e-6)
    assert len(splits.test) == 2 * loaded.meta["metrics"]["n_signal"] == loaded.meta["data"]["n_test"]
    # provenance: created is when training finished, reproduce is the command that made the file
    training = loaded.meta["training"]
    assert training["history"] and training["started_at"] <= training["finished_at"]
    assert loaded.meta["created"] == training["finished_at"]
    assert loaded.meta["recipe"]["from_sha256"] == sha256_file(backbone_file)
    command = shlex.split(loaded.meta["reproduce"])
    assert command[:2] == ["coffea-hepfm", "finetune"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {
        "--data": str(train_dir),
        "--from": str(backbone_file),
        "--task": "tth_vs_ttbar",
        "--train-size": "60",
        "--strategy": "full",
        "--seed": "0",
        "--lr": "0.0005",
        "--head-lr-mult": "10.0",
        "--epochs": "20",
        "--threads": "1",
        "--out": str(out),
    }
    assert "when training finished" in out.with_suffix(".md").read_text()


@pytest.fixture(scope="module")
def zprime_dir(tmp_path_factory):
    """Z'(1.5 TeV) -> tt vs SM ttbar: a task known to separate easily (test AUC 0.94 at N = 100 and 0.98
    at N = 1000 in docs/results.md), so a fine-tuning that learns must reach a high AUC."""
    from coffea_hepfm.simulation import simulate

    sim = tmp_path_factory.mktemp("sim_zprime")
    simulate(
        ["zprime_tt", "ttbar"], n_events=600, seed=21, out_dir=sim, workers=0, chunk_size=600, progress=False
    )
    out = tmp_path_factory.mktemp("train_zprime")
    build_dataset(sim, out, ["zprime_tt", "ttbar"], spec=_backbone_spec())  # graphs of the backbone's spec
    return out


#: the shipped pretrained backbone: the fine-tuning tests below start from it, as an analysis would
BACKBONE = "backbone"


def _backbone_spec():
    """The graph spec the shipped backbone was trained with (a model scores graphs of its own spec)."""
    from coffea_hepfm import models
    from coffea_hepfm.model.io import read_metadata

    return GraphSpec.from_dict(read_metadata(models.path(BACKBONE))["graph_spec"])


def _untrained(pretrained=BACKBONE, seed=0):
    """The model fine-tuning starts from with this seed (finetune seeds torch, then builds it)."""
    from coffea_hepfm.training.finetune import build_finetune_model

    torch.manual_seed(seed)
    return build_finetune_model(pretrained, _backbone_spec()).eval()


# Thresholds: on this 200-event training set and 160-event test split (40 ttbar, 120 Z'), fine-tuning
# the shipped backbone (simulation with MPI on, 2026-12-01) measured test AUC 0.928 (full), 0.925
# (head-first), 0.896 (frozen) and scratch 0.899; the Hanley-McNeil standard error at these AUCs is
# 0.019-0.024, and 0.05 at AUC 0.5. Each threshold is 3 standard errors below the measured value (>= 6.6
# above chance), and each run must also beat its own untrained starting point (a random head on the
# backbone scores anywhere; here 0.27).
@pytest.mark.parametrize("init, threshold", [("pretrained", 0.87), ("scratch", 0.83)])
def test_finetune_learns_an_easy_task(zprime_dir, init, threshold):
    from coffea_hepfm.training.finetune import finetune

    pretrained = BACKBONE if init == "pretrained" else None
    info = finetune(zprime_dir, "zprime_vs_ttbar", 200, pretrained=pretrained, max_epochs=15, progress=False)
    splits = info["splits"]
    before = _auc(_untrained(pretrained), splits.test)
    after = info["metrics"]["auc"]
    print(f"{init}: test AUC {before:.3f} before, {after:.3f} after ({len(splits.test)} test events)")
    assert after >= threshold and after >= before + 0.05
    assert info["metrics"]["val_auc"] == pytest.approx(_auc(info["model"], splits.val), abs=1e-6)


def test_frozen_strategy_trains_only_the_head(zprime_dir):
    from coffea_hepfm.model import load_backbone
    from coffea_hepfm.training.finetune import finetune

    start = _untrained()
    info = finetune(
        zprime_dir,
        "zprime_vs_ttbar",
        200,
        pretrained=BACKBONE,
        strategy="frozen",
        max_epochs=15,
        progress=False,
    )
    model = info["model"]
    ref = load_backbone(BACKBONE).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.backbone.state_dict().items())  # bit-identical
    assert all(not torch.equal(v, start.head.state_dict()[k]) for k, v in model.head.state_dict().items())
    before, after = _auc(start, info["splits"].test), info["metrics"]["auc"]
    print(f"frozen: test AUC {before:.3f} before, {after:.3f} after")
    assert after >= 0.83 and after >= before + 0.05


def test_head_strategy_trains_head_then_everything(zprime_dir):
    from coffea_hepfm.model import load_backbone
    from coffea_hepfm.training.finetune import finetune

    info = finetune(
        zprime_dir,
        "zprime_vs_ttbar",
        200,
        pretrained=BACKBONE,
        strategy="head",
        max_epochs=16,
        progress=False,
    )
    head_phase, full_phase = info["training"]["phases"]
    pretrained = _backbone_digest(load_backbone(BACKBONE))
    # phase 1 trains the head on the frozen backbone: bit-identical weights; phase 2 trains everything
    assert head_phase["phase"] == "head" and head_phase["steps"] > 0
    assert head_phase["backbone_sha256"] == pretrained
    assert full_phase["phase"] == "full" and full_phase["steps"] > 0
    assert full_phase["backbone_sha256"] != pretrained
    returned = head_phase if head_phase.get("returned") else full_phase
    assert _backbone_digest(info["model"].backbone) == returned["backbone_sha256"]
    assert info["training"]["steps"] == head_phase["steps"] + full_phase["steps"]
    # the reported validation AUC is the returned model's, the best over both phases
    splits = info["splits"]
    assert info["metrics"]["val_auc"] == pytest.approx(_auc(info["model"], splits.val), abs=1e-6)
    assert info["metrics"]["val_auc"] == pytest.approx(
        max(head_phase["best_score"], full_phase["best_score"]), abs=1e-5
    )
    print(f"head: test AUC {info['metrics']['auc']:.3f}")
    assert info["metrics"]["auc"] >= 0.87


def test_study_then_ship_records_the_route(train_dir, backbone_file, tmp_path):
    """The shipping route: `coffea-hepfm study` saves the model, `coffea-hepfm ship` re-saves it under its
    name; the shipped file records both commands, exactly as run, and keeps the training time."""
    import shlex

    from typer.testing import CliRunner

    from coffea_hepfm.cli import app
    from coffea_hepfm.model import read_metadata

    study = [
        "study", "--data", str(train_dir), "--from", str(backbone_file), "--out", str(tmp_path / "study"),
        "--tasks", "tth_vs_ttbar", "--sizes", "40", "--seeds", "0", "--budgets", "40:2", "--strategy", "full",
        "--inits", "pretrained", "--threads", "1",
    ]  # fmt: skip
    res = CliRunner().invoke(app, study)
    assert res.exit_code == 0, res.output
    src = tmp_path / "study" / "models" / "tth_vs_ttbar_40_pretrained_s0.safetensors"
    trained = read_metadata(src)
    assert trained["reproduce"] == shlex.join(["coffea-hepfm", *study])
    assert trained["study"] == {
        "out": str(tmp_path / "study"), "task": "tth_vs_ttbar", "train_size": 40, "seed": 0, "init": "pretrained"
    }  # fmt: skip
    assert trained["created"] == trained["training"]["finished_at"]
    ship = [
        "ship",
        str(src),
        str(tmp_path / "tth_vs_ttbar.safetensors"),
        "--reason",
        "the study's model, shipped",
    ]
    res = CliRunner().invoke(app, ship)
    assert res.exit_code == 0, res.output
    shipped = read_metadata(tmp_path / "tth_vs_ttbar.safetensors")
    assert shipped["created"] == trained["created"] and shipped["reproduce"] == trained["reproduce"]
    assert [r["command"] for r in shipped["resaves"]] == [shlex.join(["coffea-hepfm", *ship])]
    card = (tmp_path / "tth_vs_ttbar.md").read_text().split("## Reproduce")[1]
    assert card.index(trained["reproduce"]) < card.index(shipped["resaves"][0]["command"])


def test_bad_inputs(train_dir, backbone_file):
    from coffea_hepfm.training.finetune import finetune
    from coffea_hepfm.training.pretrain import pretrain

    with pytest.raises(DatasetError, match="tth_aa.*missing"):
        finetune(train_dir, "cp_tth_vs_tta", 20, pretrained=None, progress=False)
    with pytest.raises(DatasetError, match="larger than the data"):
        finetune(train_dir, "tth_vs_ttbar", 10_000, pretrained=None, progress=False)
    with pytest.raises(DatasetError, match="unknown task"):
        finetune(train_dir, "higgs_vs_everything", 20, pretrained=None, progress=False)
    with pytest.raises(DatasetError, match="needs a pretrained backbone"):
        finetune(train_dir, "tth_vs_ttbar", 20, pretrained=None, strategy="frozen", progress=False)
    with pytest.raises(DatasetError, match="missing"):
        pretrain(train_dir, "x.safetensors", processes=["ttbar", "qcd"], progress=False)


def test_metrics_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    from coffea_hepfm.training.evaluate import binary_metrics

    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.4
    s = np.clip(0.5 + 0.3 * (y - 0.5) + 0.25 * rng.standard_normal(500), 0, 1)
    m = binary_metrics(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["accuracy"] == pytest.approx(np.mean((s >= 0.5) == y))
    assert m["rejection_at_50"] == pytest.approx(1 / np.interp(0.5, tpr, fpr))
    assert m["rejection_at_30"] > m["rejection_at_50"] > 1
    with pytest.raises(ValueError, match="both signal and background"):
        binary_metrics(np.ones(5, bool), np.linspace(0, 1, 5))


def test_weighted_metrics_count_events_by_their_weight():
    """Integer weights are repeated events: the weighted metrics equal the unweighted ones of the repeated
    sample (independent of scikit-learn's weighting) and scikit-learn's ``sample_weight`` AUC."""
    from sklearn.metrics import roc_auc_score

    from coffea_hepfm.training.evaluate import binary_metrics

    rng = np.random.default_rng(4)
    y = rng.random(300) < 0.5
    s = np.clip(0.5 + 0.2 * (y - 0.5) + 0.25 * rng.standard_normal(300), 0, 1)
    w = rng.integers(1, 5, 300).astype(float)
    weighted = binary_metrics(y, s, sample_weight=w)
    repeated = binary_metrics(np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int)))
    for key in ("auc", "accuracy", "rejection_at_30", "rejection_at_50"):
        assert weighted[key] == pytest.approx(repeated[key], rel=1e-12), key
    assert weighted["auc"] == pytest.approx(roc_auc_score(y, s, sample_weight=w), rel=1e-12)
    assert weighted["auc"] != pytest.approx(binary_metrics(y, s)["auc"], abs=1e-3)  # weights matter here
    assert weighted["sum_weight_signal"] == w[y].sum()
    with pytest.raises(ValueError, match="background weights sum to"):
        binary_metrics(y, s, sample_weight=np.where(y, 1.0, 0.0))


def test_linear_cka():
    from coffea_hepfm.training.cka import linear_cka

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 2.5 * x @ q + 7.0) == pytest.approx(1.0)  # orthogonal, scale, shift
    assert linear_cka(x, rng.normal(size=(300, 16))) < 0.2
    assert linear_cka(x, x * np.linspace(0.1, 10, 16)) < 0.95  # anisotropic scaling is not invariant
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, np.ones((300, 4)))


def test_shipped_tth_model_scores_tth_above_ttbar(table, sim_dir, tmp_path):
    from coffea_hepfm import models
    from coffea_hepfm.model import load_model
    from coffea_hepfm.training.evaluate import signal_scores

    loaded = load_model(models.path("tth_vs_ttbar"))
    assert loaded.class_names == ["ttH", "ttbar"] and loaded.kind == "classifier"
    if loaded.spec != SPEC:  # a model trained on another graph spec version scores graphs of its own spec
        build_dataset(sim_dir, tmp_path / "own_spec", ["ttbar", "tth"], spec=loaded.spec)
        table = load_classes(tmp_path / "own_spec", ["tth", "ttbar"])
    score = signal_scores(loaded.module, table, loaded.spec)
    tth, ttbar = score[table.y == 0], score[table.y == 1]
    assert tth.mean() > ttbar.mean() + 0.1


def test_study_summary_time_to_target():
    from coffea_hepfm.training.study import markdown_table, summarize

    def run(init, seed, auc, history, best):
        return {
            "task": "tth_vs_ttbar",
            "train_size": 100,
            "seed": seed,
            "init": init,
            "metrics": {"auc": auc, "rejection_at_50": 5.0},
            "training": {"history": history, "best_score": best, "train_time_s": 9.0},
        }

    runs = [
        run("scratch", 0, 0.70, [[2.0, 10, 0.6, 0.65], [8.0, 40, 0.5, 0.71]], 0.71),
        run("pretrained", 0, 0.80, [[1.0, 10, 0.5, 0.75], [4.0, 40, 0.4, 0.80]], 0.80),
        run("scratch", 1, 0.72, [[3.0, 10, 0.6, 0.74]], 0.74),
        run("pretrained", 1, 0.78, [[1.5, 10, 0.5, 0.70], [6.0, 40, 0.4, 0.73]], 0.73),  # never reaches 0.74
    ]
    entry = summarize(runs)["tth_vs_ttbar"]["100"]
    assert entry["scratch"]["auc_mean"] == pytest.approx(0.71) and entry["pretrained"]["n_seeds"] == 2
    assert entry["pretrained"]["auc_std"] == pytest.approx(np.std([0.80, 0.78], ddof=1))
    t = entry["time_to_scratch_auc"]
    assert t["finetuned_s_mean"] == 1.0 and t["finetuned_reached"] == "1/2" and t["scratch_s_mean"] == 5.5
    assert "| tth_vs_ttbar | 100 |" in markdown_table(summarize(runs))
