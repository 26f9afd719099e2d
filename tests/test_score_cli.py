"""``coffea-hepfm score``: parquet output, workers, empty input, and nothing half-written on failure."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from coffea_hepfm.cli import app


def _invoke(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


@pytest.fixture(scope="module")
def eager_scores(shared_nanoaod, hepfm_model):
    from coffea_hepfm import HEPFMScore
    from coffea_hepfm.nanoaod import open_events

    return HEPFMScore(hepfm_model, device="cpu")(open_events(shared_nanoaod / "nano_dy.root"))


def test_score_files_to_parquet(shared_nanoaod, empty_file, hepfm_model, eager_scores, tmp_path):
    out = tmp_path / "scores.parquet"
    res = _invoke(
        shared_nanoaod / "nano_dy.root",
        empty_file,
        "--model",
        hepfm_model,
        "--out",
        out,
        "--chunk-size",
        16,
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert "40 events scored" in res.output
    table = pq.read_table(out)
    assert table.num_rows == 40
    assert table.column_names[:4] == ["file", "run", "luminosityBlock", "event"]
    for name in eager_scores.fields:
        np.testing.assert_allclose(
            table[name].to_numpy(), ak.to_numpy(eager_scores[name]), rtol=1e-6, atol=1e-7
        )
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_workers_give_the_same_table(shared_nanoaod, tiny_model_file, tmp_path):
    files = [shared_nanoaod / "nano_tt_v12.root", shared_nanoaod / "nano_dy.root"]
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    for out, workers in ((one, 0), (two, 2)):
        res = _invoke(
            *files,
            "--model",
            tiny_model_file,
            "--out",
            out,
            "--chunk-size",
            64,
            "--workers",
            workers,
            "--device",
            "cpu",
            "--embedding",
        )
        assert res.exit_code == 0, res.output
        # nano_tt_v12 has no Photon: the documented warning, once for the whole run, naming the file (from
        # the worker processes too)
        (line,) = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
        assert line.startswith(f"warning: MissingCollectionWarning x4 in {files[0]}: Photon_pt not found")
    a, b = pq.read_table(one), pq.read_table(two)
    assert a.num_rows == 240 and a.equals(b)
    assert np.asarray(a["embedding"].to_pylist()).shape == (240, 16)


def test_empty_input_gives_empty_table_with_schema(empty_file, tiny_model_file, tmp_path):
    out = tmp_path / "empty.parquet"
    res = _invoke(empty_file, "--model", tiny_model_file, "--out", out)
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.num_rows == 0 and {"ttH", "ttbar", "event"} <= set(table.column_names)


def test_errors_leave_nothing_behind(shared_nanoaod, tiny_model_file, tmp_path):
    import uproot

    out = tmp_path / "scores.parquet"
    res = _invoke(shared_nanoaod / "nano_dy.root", "--model", "no_such_model", "--out", out)
    assert res.exit_code == 2 and "no_such_model" in res.output and not out.exists()
    # The second file fails after the first was written to the temporary file.
    bad = tmp_path / "no_jet_eta.root"
    with uproot.open(shared_nanoaod / "nano_tree.root") as f:
        jets = f["Events"].arrays(["Jet_pt", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB"], how="zip")["Jet"]
        flat = f["Events"].arrays(["MET_pt", "MET_phi", "run", "luminosityBlock", "event"])
    data = {"Jet": jets, **{k: flat[k] for k in flat.fields}}
    with uproot.recreate(bad) as f:
        types = {k: v.type if k == "Jet" else v.type.content for k, v in data.items()}
        f.mktree("Events", types, field_name=lambda outer, inner: f"{outer}_{inner}")
        f["Events"].extend(data)
    res = _invoke(shared_nanoaod / "nano_dy.root", bad, "--model", tiny_model_file, "--out", out)
    assert res.exit_code == 2 and "Jet_eta" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_jet_eta.root"]
