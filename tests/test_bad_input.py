"""Bad input never gives a wrong answer without a word (docs/design.md, "Bad input").

Real CMS files from ../shared and copies of them written with uproot into ``tmp_path``: a v15-like
file (``PuppiMET`` only), NaN jet pT, a truncated and a bit-flipped file, interrupted ntuple runs, a
``coffea-hepfm score`` killed with SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
from typer.testing import CliRunner

from coffea_hepfm.cli import app
from coffea_hepfm.graph import GraphSpec, GraphSpecMismatch
from coffea_hepfm.nanoaod import open_events
from coffea_hepfm.nanoaod.consistency import MixedInputsError
from coffea_hepfm.processors import Selection

NO_MUON_ID = Selection(muon_id=None)  # for ntuples of write_copy() files, which have no Muon_tightId


def write_copy(src, dst, *, rename=None, edit=None):
    """Copy the branches the graph reads (+ event IDs, genWeight) of a real NanoAOD file with uproot.

    ``rename`` renames collections (``{"MET": "PuppiMET"}``); ``edit(columns)`` changes the arrays
    (``{"Jet_pt": ..., "MET_pt": ...}``) in place before writing.
    """
    rename = rename or {}
    with uproot.open(src) as f:
        tree = f["Events"]
        keys = set(tree.keys())
        names = [n for n in GraphSpec().required_branches(keys) if not n.startswith("n")]
        names += [f"{c}_mass" for c in ("Electron", "Muon", "Photon") if f"{c}_pt" in names]  # coffea vectors
        names += [n for n in ("run", "luminosityBlock", "event", "genWeight") if n in keys]
        arrays = tree.arrays(names)
    cols = {n: arrays[n] for n in arrays.fields}
    if edit is not None:
        edit(cols)
    jagged, flat = {}, {}
    for name, a in cols.items():
        coll, _, field = name.partition("_")
        coll = rename.get(coll, coll)
        if field and a.ndim == 2:
            jagged.setdefault(coll, {})[field] = a
        else:
            flat[f"{coll}_{field}" if field else name] = a
    data = {**{c: ak.zip(fields) for c, fields in jagged.items()}, **flat}
    with uproot.recreate(dst) as f:  # NanoAOD naming: nJet, Jet_pt, ...
        types = {k: v.type if k in jagged else v.type.content for k, v in data.items()}
        f.mktree("Events", types, field_name=lambda outer, inner: f"{outer}_{inner}")
        f["Events"].extend(data)
    return dst


@pytest.fixture(scope="module")
def small_dy(shared_nanoaod, tmp_path_factory):
    """nano_dy.root with only the branches the graph reads (+ IDs, genWeight): quick to open."""
    return write_copy(shared_nanoaod / "nano_dy.root", tmp_path_factory.mktemp("small") / "dy.root")


def _invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


# -- item 2: one dask collection over files with different branches ---------------------------------------
def test_mixed_dask_collection_is_refused_naming_files_and_branches(
    shared_nanoaod, tiny_model_file, tmp_path
):
    from coffea_hepfm import HEPFMScore

    v12, dy = shared_nanoaod / "nano_tt_v12.root", shared_nanoaod / "nano_dy.root"

    def no_jet_id(cols):  # NanoAOD v15 has no Jet_jetId; this copy lacks the fractions to recompute it
        del cols["Jet_jetId"]

    v15 = write_copy(v12, tmp_path / "v15_like.root", edit=no_jet_id)
    scorer = HEPFMScore(tiny_model_file, device="cpu")
    # first file without Photon: dy's photons (and its Run 2 taggers) would be dropped
    with pytest.raises(
        MixedInputsError,
        match=r"form.*nano_tt_v12\.root.*nano_dy\.root: would be read with "
        r".*Photon_eta, Photon_phi, Photon_pt, nPhoton.*one collection per group",
    ) as err:
        scorer(open_events([v12, dy], mode="dask"))
    assert list(err.value.differences) == [str(dy)]
    # the other order: v12 lacks Photon (today a bare KeyError: 'nPhoton' from inside coffea)
    with pytest.raises(
        MixedInputsError, match=r"nano_tt_v12\.root: .*lacks .*Photon_eta.*the run would fail"
    ):
        scorer(open_events([dy, v12], mode="dask"))
    # v12 then a file without the jet ID the collection reads: the file, the branch and the remedy
    with pytest.raises(
        MixedInputsError,
        match=r"v15_like\.root: MissingBranchError: Jet_jetId not found.*Jets are never taken without an ID",
    ) as err:
        scorer(open_events([v12, v15], mode="dask"))
    assert list(err.value.differences) == [str(v15)]


def test_dask_collection_of_alike_files_passes_the_check(shared_nanoaod, small_dy):
    # Files that differ only in branches the graph does not read are one collection as before (their
    # scores equal the eager ones: test_score.py::test_simulated_files_eager_and_dask).
    from coffea_hepfm.nanoaod.consistency import check_uniform_inputs

    # (nano_dy and nano_tree differ under spec v2: Photon_cutBasedBitmap vs the older Photon_cutBased.)
    events = open_events([shared_nanoaod / "nano_dy.root", small_dy], mode="dask")
    assert check_uniform_inputs(events, GraphSpec().required_branches) is None


def test_mixed_dataset_in_dask_ntuples_is_refused_naming_the_dataset(shared_nanoaod, tmp_path):
    from coffea_hepfm.processors import make_ntuples

    files = [str(shared_nanoaod / "nano_tt_v12.root"), str(shared_nanoaod / "nano_dy.root")]
    fs = {"mixed": {"files": files, "metadata": {"label": "bkg", "xsec": 1.0}}}
    with pytest.raises(
        MixedInputsError, match=r"dataset 'mixed':.*nano_dy\.root: would be read with .*Photon"
    ):
        make_ntuples(fs, tmp_path / "out", executor="dask", chunksize=100)
    assert not (tmp_path / "out" / "mixed").exists()  # nothing was run


# -- item 3 and the "abc" crash: cross sections and sums of weights --------------------------------------
@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        (
            {"xsec": -800.0},
            r"dataset 'dy': metadata 'xsec' is -800.0; the cross section in pb must be a finite",
        ),
        ({"xsec": 0}, r"dataset 'dy': metadata 'xsec' is 0; .* must be a finite number > 0"),
        ({"xsec": float("nan")}, r"dataset 'dy': metadata 'xsec' is nan;"),
        ({"xsec": "abc"}, r"^dataset 'dy': metadata 'xsec' is 'abc', not a number; fix it in the fileset$"),
        (
            {"xsec": 1.0, "sumw": -5.0},
            r"dataset 'dy': sum of generator weights is -5.0 \(given in the metadata\)",
        ),
    ],
)
def test_unphysical_normalisation_is_refused(small_dy, tmp_path, metadata, match):
    from coffea_hepfm.processors import FilesetError, make_ntuples

    fs = {"dy": {"files": [str(small_dy)], "metadata": {"label": "bkg", **metadata}}}
    with pytest.raises(FilesetError, match=match) as err:
        make_ntuples(fs, tmp_path / "out", selection=NO_MUON_ID)
    assert "weights summing to 0" not in str(err.value) or "sumw" in metadata
    assert not (tmp_path / "out").exists()


def test_negative_sum_of_generator_weights_is_refused(small_dy, tmp_path):
    from coffea_hepfm.processors import FilesetError, make_ntuples

    def negate(cols):
        cols["genWeight"] = -cols["genWeight"]

    flipped = write_copy(small_dy, tmp_path / "neg_genweight.root", edit=negate)
    fs = {"dy": {"files": [str(flipped)], "metadata": {"label": "bkg", "xsec": 6077.2}}}
    with pytest.raises(
        FilesetError, match=r"dataset 'dy': sum of generator weights is -\d.*summed over the files"
    ):
        make_ntuples(fs, tmp_path / "out", selection=NO_MUON_ID)


def test_data_needs_no_cross_section(shared_nanoaod, tmp_path):
    from coffea_hepfm.processors import make_ntuples, read_ntuples

    fs = {
        "mu": {
            "files": [str(shared_nanoaod / "nano_dimuon.root")],
            "metadata": {"label": "d", "is_mc": False},
        }
    }
    make_ntuples(fs, tmp_path / "out", require_mc=False)
    arr = read_ntuples(tmp_path / "out")
    assert len(arr) > 0 and (arr.weight.to_numpy() == 1.0).all()


# -- item 5 and the unreadable-file crashes: what the command line shows ---------------------------------
def test_cli_summarises_package_warnings_per_kind_and_file(shared_nanoaod, tiny_model_file, tmp_path):
    def nan_jets(cols):  # NaN pT for the first jet of events 0, 10, 20, 30: one per chunk of 10
        pt = cols["Jet_pt"]
        flat = ak.to_numpy(ak.flatten(pt)).copy()
        starts = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(pt)))[:-1]])
        for ev in (0, 10, 20, 30):
            assert ak.num(pt)[ev] > 0
            flat[starts[ev]] = np.nan
        cols["Jet_pt"] = ak.unflatten(flat, ak.num(pt))

    bad = write_copy(shared_nanoaod / "nano_dy.root", tmp_path / "nan_jet_pt.root", edit=nan_jets)
    out = tmp_path / "scores.parquet"
    res = _invoke(
        "score", bad, "--model", tiny_model_file, "--out", out, "--chunk-size", 10, "--device", "cpu"
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1, res.output  # one line for the kind, not one per chunk
    assert lines[0].startswith(f"warning: NonFiniteWarning x4 in {bad}: unusable input values")
    assert "(NaN/inf, pT < 0" in lines[0] and "objects dropped (GraphSpec(nonfinite='drop'))" in lines[0]
    assert lines[0].endswith("bad values per branch Jet_pt: 1; objects per type jet: 1")
    assert pq.read_table(out).num_rows == 40


@pytest.fixture(scope="module")
def broken_files(small_dy, tmp_path_factory):
    """A truncated copy and a bit-flipped copy (16 bytes inverted inside the first Jet_pt basket)."""
    base = tmp_path_factory.mktemp("broken")
    data = small_dy.read_bytes()
    truncated = base / "truncated.root"
    truncated.write_bytes(data[: len(data) // 2])
    with uproot.open(small_dy) as f:
        seek = int(f["Events"]["Jet_pt"].member("fBasketSeek")[0])
        size = int(f["Events"]["Jet_pt"].member("fBasketBytes")[0])
    flipped = bytearray(data)
    for i in range(seek + size // 2, seek + size // 2 + 16):
        flipped[i] ^= 0xFF
    bitflip = base / "bitflip.root"
    bitflip.write_bytes(bytes(flipped))
    return {"truncated": truncated, "bitflip": bitflip}


@pytest.mark.parametrize("kind", ["truncated", "bitflip"])
def test_score_unreadable_file_one_error_line(broken_files, small_dy, tiny_model_file, tmp_path, kind):
    out = tmp_path / "scores.parquet"
    res = _invoke("score", small_dy, broken_files[kind], "--model", tiny_model_file, "--out", out)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(f"error: cannot read {broken_files[kind]}")
    assert "truncated or corrupt" in errors[0] and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_ntuples_unreadable_file_one_error_line(broken_files, tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(
        json.dumps({"dy": {"files": [str(broken_files["bitflip"])], "metadata": {"label": "b", "xsec": 1}}})
    )
    res = _invoke("ntuples", fileset, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"cannot read {broken_files['bitflip']} (entries 0-40)" in errors[0], (
        res.output
    )


def test_load_model_names_expected_and_file_spec_the_right_way_round(tiny_model_file):
    from coffea_hepfm.model import load_model

    with pytest.raises(GraphSpecMismatch, match=r"max_jets: expected 4, file has 10") as err:
        load_model(tiny_model_file, expected_spec=GraphSpec(max_jets=4))  # the file has GraphSpec(): 10
    assert err.value.differences == {"max_jets": (4, 10)}


# -- item 7: ntuples of an interrupted run ---------------------------------------------------------------
def test_reading_interrupted_ntuples_raises_naming_dataset_and_chunks(small_dy, tmp_path):
    from coffea_hepfm.processors import (
        IncompleteNtuplesError,
        IncompleteNtuplesWarning,
        make_ntuples,
        read_ntuples,
    )
    from coffea_hepfm.processors.writer import ntuple_files

    fs = {
        "sig": {"files": [str(small_dy)], "metadata": {"label": "signal", "xsec": 1.0}},
        "bkg": {"files": [str(small_dy)], "metadata": {"label": "background", "xsec": 2.0}},
    }
    out = tmp_path / "nt"
    kw = {"chunksize": 20, "selection": NO_MUON_ID}
    make_ntuples(fs, out, **kw)
    complete = read_ntuples(out)
    sig = ntuple_files(out, ["sig"])
    assert len(sig) == 2
    n_lost = len(ak.from_parquet(sig[1]))
    sig[1].unlink()  # what a run killed after the first chunk of 'sig' leaves
    with pytest.raises(
        IncompleteNtuplesError, match=r"dataset 'sig': 1 of 2 chunk\(s\) missing \(" + sig[1].name
    ) as e:
        read_ntuples(out)
    assert "Re-run the same `coffea-hepfm ntuples` command" in str(e.value) and "'bkg'" not in str(e.value)
    assert len(read_ntuples(out, datasets=["bkg"])) == len(complete[complete.label == 0])  # complete: reads
    with pytest.warns(IncompleteNtuplesWarning, match="dataset 'sig': 1 of 2"):
        assert len(read_ntuples(out, allow_incomplete=True)) == len(complete) - n_lost
    # fine-tuning refuses too, with one error line
    res = _invoke("finetune", "--ntuples", out, "--from", "none", "--out", tmp_path / "m.safetensors")
    assert res.exit_code == 2 and "error:" in res.output and "dataset 'sig': 1 of 2" in res.output, res.output
    # the remedy works: a rerun writes the missing chunk and the ntuples are whole again
    counts = make_ntuples(fs, out, **kw)
    assert counts["sig"]["chunks_written"] == 1 and counts["bkg"]["chunks_written"] == 0
    assert ak.array_equal(read_ntuples(out), complete)


# -- item 8: temp files of a killed `coffea-hepfm score` --------------------------------------------------
def test_rerun_after_sigkill_removes_stale_temp_but_not_a_live_one(shared_nanoaod, tiny_model_file, tmp_path):
    out = tmp_path / "scores.parquet"
    src = shared_nanoaod / "nano_tt_v12.root"
    args = ["score", str(src), "--model", str(tiny_model_file), "--out", str(out), "--chunk-size", "1"]
    cmd = [sys.executable, "-c", "from coffea_hepfm.cli import main; main()", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".scores.parquet.tmp-*")) and proc.poll() is None:
            assert time.monotonic() < deadline, "score never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-run: 200 chunks of one event
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (stale,) = tmp_path.glob(".scores.parquet.tmp-*")
    assert not out.exists()
    # a concurrent live run's temp file: locked by its writer, as score's own are
    live = tmp_path / ".scores.parquet.tmp-live0001"
    with open(live, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = _invoke(*args[:-2], "--chunk-size", 200, "--device", "cpu")
        assert res.exit_code == 0, res.output
        assert not stale.exists() and live.exists()
    assert pq.read_table(out).num_rows == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, out.name]
    os.unlink(live)
