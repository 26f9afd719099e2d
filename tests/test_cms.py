"""coffea_hepfm.cms: reference tables against the real BTV correctionlib files, eras, object IDs."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from coffea_hepfm import cms
from coffea_hepfm.cms import btag, eras, objects

# correctionlib correction name -> NanoAOD branch
BTV_NAMES = {
    "deepJet_wp_values": "btagDeepFlavB",
    "particleNet_wp_values": "btagPNetB",
    "robustParticleTransformer_wp_values": "btagRobustParTAK4B",
}
BTV_FILES = {"2022": "2022_Summer22_btagging.json", "2022EE": "2022_Summer22EE_btagging.json"}


@pytest.mark.parametrize("era", sorted(BTV_FILES))
def test_working_points_match_btv_correctionlib(corrections_dir, era):
    """The 2022 / 2022EE tables equal the public BTV files (read with correctionlib, as analysts do)."""
    correctionlib = pytest.importorskip("correctionlib")
    path = corrections_dir / "btv" / BTV_FILES[era]
    cset = correctionlib.CorrectionSet.from_file(str(path))
    names = {c["name"] for c in json.loads(path.read_text())["corrections"]}
    assert set(BTV_NAMES) <= names
    for name, branch in BTV_NAMES.items():
        wp = cms.working_points(branch, era)
        got = tuple(cset[name].evaluate(k) for k in ("L", "M", "T"))
        assert wp.cuts == pytest.approx(got, abs=0), (branch, era)
        assert era.replace("2022", "Run3Summer22") in wp.source


def test_tables_consistent():
    assert set(btag.TAGGER_PREFERENCE) == set(btag.TAGGERS)
    for (branch, era), wp in cms.WORKING_POINTS.items():
        assert branch in btag.TAGGERS and era in cms.ERAS
        assert (wp.branch, wp.era) == (branch, era)
        assert 0 < wp.loose < wp.medium < wp.tight < 1, (branch, era)
        assert wp.source.startswith("https://")
    # Every tagger has at least one era; the Run 3 taggers cover every Run 3 era BTV published.
    for branch in btag.TAGGERS:
        assert btag.eras_of(branch)
    assert btag.eras_of("btagPNetB") == ("2022", "2022EE", "2023", "2023BPix")
    assert btag.eras_of("btagDeepFlavB")[:4] == ("2016preVFP", "2016postVFP", "2017", "2018")
    with pytest.raises(KeyError, match="btagUParTAK4B has 2024"):
        cms.working_points("btagUParTAK4B", "2022")
    with pytest.raises(KeyError, match="unknown b-tag branch 'btagFoo'"):
        cms.working_points("btagFoo", "2022")
    with pytest.raises(KeyError, match="unknown era '2019'"):
        cms.working_points("btagDeepFlavB", "2019")
    assert cms.working_points("Jet_btagDeepFlavB", "2018").medium == 0.2783
    # Every tagger's reference era for simulation has working points.
    for table in (btag.REFERENCE_ERA, btag.REFERENCE_ERA_RUN3):
        assert set(table) == set(btag.TAGGERS)
        assert all((b, e) in cms.WORKING_POINTS for b, e in table.items())


def test_eras_from_runs():
    ranges = [cms.RUN_RANGES[e] for e in cms.ERAS]
    assert all(a <= b for a, b in ranges) and all(
        b1 < a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:], strict=False)
    )
    runs = [1, 246908, 260627, 278768, 278769, 315267, 355100, 359021, 359022, 369802, 369803, 386951, 999999]
    want = [
        None,
        "2015",
        "2015",
        "2016preVFP",
        "2016postVFP",
        "2018",
        "2022",
        "2022",
        "2022EE",
        "2023",
        "2023BPix",
        "2024",
        None,
    ]
    assert [cms.era_of_run(r) for r in runs] == want
    idx = eras.era_index_of_run(np.array(runs))
    assert [cms.ERAS[i] if i >= 0 else None for i in idx] == want


def test_jet_ids():
    eta = np.array([0.5, 2.65, 2.8, 2.8, 3.5, 3.5])
    ne_h = np.array([0.2, 0.95, 0.98, 0.995, 0.5, 0.5])
    ne_em = np.array([0.2, 0.5, 0.5, 0.5, 0.3, 0.5])
    ch_h = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    ch_em = np.array([0.9, 0.0, 0.0, 0.0, 0.0, 0.0])
    mu = np.zeros(6)
    ch_n = np.array([3, 0, 0, 0, 0, 0])
    ne_n = np.array([3, 1, 1, 1, 2, 2])
    tight = objects.jet_id_run3(eta, ne_h, ne_em, ch_h, ch_em, mu, ch_n, ne_n, "tight")
    assert tight.tolist() == [True, False, True, False, True, False]
    tlv = objects.jet_id_run3(eta, ne_h, ne_em, ch_h, ch_em, mu, ch_n, ne_n, "tightLepVeto")
    assert tlv.tolist() == [False, False, True, False, True, False]  # chEmEF 0.9 in the central jet
    bits = np.array([6, 2, 2, 2, 2, 2])
    fixed = objects.jet_id_v12_fix(bits, eta, ne_h, ne_em, ch_em, mu, "tight")
    assert fixed.tolist() == [True, True, True, False, True, False]
    assert objects.jet_id_bits(bits, "tightLepVeto").tolist() == [True] + [False] * 5


def test_cms_imports_nothing_from_the_package():
    """The cms tables may be imported by every stage, so they import only the standard library / numpy."""
    for path in Path(cms.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coffea_hepfm"):
                assert node.module.startswith("coffea_hepfm.cms"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("coffea_hepfm") for a in node.names), path.name


def test_cms_docstrings():
    for module in (btag, eras, objects):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0, module.__name__
