"""Graph spec v1 model files keep loading and scoring with their own spec, with unchanged numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from graph_helpers import opened

from coffea_hepfm.graph import GraphSpec
from coffea_hepfm.graph.errors import MissingCollectionWarning

V1 = Path(__file__).resolve().parent / "data" / "v1"
MODEL = V1 / "tth_vs_ttbar.safetensors"
REFERENCE = json.loads((V1 / "reference_scores.json").read_text())


@pytest.fixture(scope="module")
def scorer():
    from coffea_hepfm.score import HEPFMScore

    return HEPFMScore(MODEL, device="cpu")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_v1_scores_unchanged(scorer, shared_nanoaod, name):
    """Scores of the pre-v2 ``tth_vs_ttbar`` model on every shared CMS file, as recorded with the v1 code
    (``tests/data/v1/make_reference.py``)."""
    assert scorer.graph_spec_.version == 1
    events = opened(shared_nanoaod / name)  # virtual, shared with the other graph tests
    if name == "nano_tt_v12.root":  # slimmed: no Photon; the v1 spec treats it as empty and says so
        with pytest.warns(MissingCollectionWarning, match="Photon_pt not found"):
            out = scorer(events)
    else:
        out = scorer(events)
    for cls, want in REFERENCE[name].items():
        np.testing.assert_allclose(np.asarray(out[cls]), want, rtol=0, atol=1e-6, err_msg=f"{name} {cls}")


def test_v1_spec_roundtrip():
    meta = json.loads((V1 / "tth_vs_ttbar.json").read_text())
    spec = GraphSpec.from_dict(meta["graph_spec"])
    assert spec.version == 1 and spec.to_dict() == meta["graph_spec"]
    assert (spec.n_node_features, spec.n_edge_features, spec.n_global_features) == (13, 4, 7)
    assert spec.node_features[7] == "btag"


def test_unbuildable_spec_refused(tmp_path):
    """A model file whose graph spec this code cannot build (a future version, an unknown field) is
    refused at construction with a message naming the file and what to do."""
    from coffea_hepfm.model.io import read_metadata
    from coffea_hepfm.score import HEPFMScore

    header = read_metadata(MODEL)
    for change, pattern in (
        ({"version": 3}, r"version 3 is not supported.*upgrade coffea-hepfm"),
        ({"max_taus": 2}, r"unknown field\(s\) \['max_taus'\]"),
    ):
        path = _rewrite_spec(MODEL, tmp_path / "future.safetensors", {**header["graph_spec"], **change})
        with pytest.raises(ValueError, match=pattern) as err:
            HEPFMScore(path)
        assert "future.safetensors" in str(err.value)


def _rewrite_spec(src: Path, dst: Path, graph_spec: dict) -> Path:
    """A copy of a model file with another graph spec in its header, written as its author would have
    (format_version 2 with fresh stored hashes, so loading gets past the integrity check to the spec)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from coffea_hepfm.model.integrity import integrity_record

    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = dict(f.metadata())
    hepfm = json.loads(meta["hepfm"])
    hepfm["graph_spec"] = graph_spec
    hepfm["format_version"] = 2
    hepfm["integrity"] = integrity_record(hepfm, tensors)
    meta["hepfm"] = json.dumps(hepfm)
    save_file(tensors, str(dst), metadata=meta)
    shutil.copy(src.with_suffix(".md"), dst.with_suffix(".md"))
    return dst
