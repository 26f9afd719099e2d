"""Shared fixtures: the real CMS NanoAOD in ../shared and small, real simulated samples.

Simulated samples are made once per test session by the project's own Pythia8 engine
(``coffea_hepfm.simulation.simulate``), so every stage is tested on both kinds of file through the same
reading code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEPFM_SHARED", ROOT.parent / "shared")) / "data"
NANOAOD = SHARED / "nanoaod"
CORRECTIONS = SHARED / "corrections"

# Non-empty real NanoAOD files; nano_dy_empty.root is tested separately.
CMS_FILES = ["nano_dy.root", "nano_dimuon.root", "nano_tt_v12.root", "nano_tree.root"]


@pytest.fixture(scope="session")
def shared_nanoaod() -> Path:
    if not NANOAOD.is_dir():
        pytest.fail(f"shared data not found at {NANOAOD}; set HEPFM_SHARED")
    return NANOAOD


@pytest.fixture(scope="session")
def corrections_dir() -> Path:
    return CORRECTIONS


@pytest.fixture(scope="session", params=CMS_FILES)
def cms_file(request, shared_nanoaod) -> Path:
    return shared_nanoaod / request.param


@pytest.fixture(scope="session")
def empty_file(shared_nanoaod) -> Path:
    return shared_nanoaod / "nano_dy_empty.root"


# Small simulated samples shared by every stage's tests. Process names follow
# `coffea-hepfm processes`. Kept small: CI has 2 cores.
SIM_PROCESSES = ("ttbar", "tth", "zjets")
SIM_EVENTS = 200


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    from coffea_hepfm.simulation import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(list(SIM_PROCESSES), n_events=SIM_EVENTS, seed=7, out_dir=out, workers=0, chunk_size=SIM_EVENTS)
    return out


@pytest.fixture(scope="session")
def sim_files(sim_dir) -> dict[str, list[Path]]:
    """{process: [chunk files]} of the session's simulated samples."""
    return {p: sorted((sim_dir / p).glob("*.root")) for p in SIM_PROCESSES}


# --- score stage (HEPFMScore) -------------------------------------------------------------------------
# A small, untrained but real model file written with the project's own save_model; tests that need the
# shipped trained model use `hepfm_model`, which prefers it once it exists.
SHIPPED_SCORE_MODEL = "tth_vs_ttbar"


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory) -> Path:
    import torch

    from coffea_hepfm.graph import GraphSpec
    from coffea_hepfm.model import ClassifierHead, HEPFMClassifier, HEPFMNet, save_model

    torch.manual_seed(0)
    spec = GraphSpec()
    n_in = (spec.n_node_features, spec.n_edge_features, spec.n_global_features)
    net = HEPFMNet(*n_in, hidden=16, n_proc_steps=2)
    clf = HEPFMClassifier(net, ClassifierHead(2, in_channels=16, width=16))
    meta = {"class_names": ["ttH", "ttbar"], "task": "test", "description": "tiny untrained test model"}
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", clf, spec.to_dict(), meta)


@pytest.fixture(scope="session")
def hepfm_model(tiny_model_file) -> str:
    """The shipped ``tth_vs_ttbar`` model if this installation has it, else the tiny test model's path."""
    from coffea_hepfm import models

    return SHIPPED_SCORE_MODEL if SHIPPED_SCORE_MODEL in models.available() else str(tiny_model_file)
