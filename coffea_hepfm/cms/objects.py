"""CMS object-identification definitions as NanoAOD encodes them, per NanoAOD version.

Only numpy: every function takes flat arrays (one value per object) and returns a boolean mask.

Jets (AK4; CHS in Run 2, PUPPI in Run 3)
    ``Jet_jetId`` is a bit field (NanoAOD branch documentation, e.g. v9: "bit1 is loose (always false in
    2017 since it does not exist), bit2 is tight, bit3 is tightLepVeto"): value 2 = tight, 4 =
    tightLepVeto in Run 2 UL and Run 3; value 1 = loose in 2016 pre-UL files. Tight has value 2 in every
    version, so :data:`JET_ID_BITS` applies to all files that have the branch.
    Run 3: https://twiki.cern.ch/twiki/bin/view/CMS/JetID13p6TeV ("Recommendations for the 13.6 TeV data
    analysis"), and JME issue https://gitlab.cern.ch/cms-jetmet/coordination/coordination/-/issues/117:

    - NanoAOD v12: ``Jet_jetId`` is wrong for |eta| > 2.7; :func:`jet_id_v12_fix` applies the JME fix
      (tight bit and neHEF < 0.99 for 2.7 < |eta| <= 3.0; tight bit and neEmEF < 0.4 above 3.0).
    - NanoAOD v13+ (v15 drops ``Jet_jetId``): :func:`jet_id_run3` recomputes it from energy fractions and
      multiplicities.

Electrons
    ``Electron_cutBased``: 0 fail, 1 veto, 2 loose, 3 medium, 4 tight (Fall17 V2 in Run 2 UL, Winter22 V1
    in Run 3; https://twiki.cern.ch/twiki/bin/view/CMS/CutBasedElectronIdentificationRun2). The cut-based
    IDs include a relative PF isolation cut. Signal efficiencies are about 95 / 90 / 80 / 70 %; the MVA
    working points WP90 / WP80 (isolation included, ``mvaIso`` / ``mvaFall17V2Iso``;
    https://twiki.cern.ch/twiki/bin/view/CMS/MultivariateElectronIdentificationRun2) have 90 / 80 %, hence
    :data:`ELECTRON_MVA_FOR`.

Muons
    ``Muon_looseId``, ``Muon_mediumId``, ``Muon_tightId`` (booleans in every NanoAOD version) and PF
    isolation ``Muon_pfRelIso04_all`` (Delta-beta corrected, cone 0.4) with the Muon POG working points
    loose < 0.25, tight < 0.15 (https://twiki.cern.ch/twiki/bin/view/CMS/SWGuideMuonIdRun2, "Particle Flow
    isolation"); ``Muon_pfIsoId`` (NanoAOD v6+) encodes the same cuts as 1 very loose ... 4 tight.

Photons
    ``Photon_cutBased`` (int): 0 fail, 1 loose, 2 medium, 3 tight (NanoAOD v9+ and the 2016 NanoAOD v1-v4);
    NanoAOD v5-v8 have ``Photon_cutBasedBitmap`` instead, bits 2^(0: loose, 1: medium, 2: tight)
    (branch documentation; https://twiki.cern.ch/twiki/bin/view/CMS/CutBasedPhotonIdentificationRun2).
    Cut-based photon IDs include PF isolation. Efficiencies about 90 / 80 / 70 %, MVA WP90 / WP80
    (``Photon_mvaID_WP90/WP80``), hence :data:`PHOTON_MVA_FOR`.
"""

from __future__ import annotations

import numpy as np

#: ``Jet_jetId`` bit values.
JET_ID_BITS = {"tight": 2, "tightLepVeto": 4}
#: Energy-fraction / multiplicity branches (without ``Jet_``) the Run 3 recipe reads for tight; the
#: lepton veto adds :data:`JET_ID_LEPVETO_FIELDS`.
JET_ID_RUN3_FIELDS = ("neHEF", "neEmEF", "chHEF", "chMultiplicity", "neMultiplicity")
#: Branches the NanoAOD v12 fix reads besides ``jetId`` for tight.
JET_ID_V12_FIELDS = ("neHEF", "neEmEF")
JET_ID_LEPVETO_FIELDS = ("chEmEF", "muEF")


def jet_id_inputs(recipe: str, level: str) -> tuple[str, ...]:
    """Branches (without ``Jet_``) that jet-ID ``recipe`` ("run3" or "v12") needs for ``level``.

    >>> jet_id_inputs("v12", "tightLepVeto")
    ('neHEF', 'neEmEF', 'chEmEF', 'muEF')
    """
    base = JET_ID_RUN3_FIELDS if recipe == "run3" else JET_ID_V12_FIELDS
    return base + (JET_ID_LEPVETO_FIELDS if level == "tightLepVeto" else ())


#: ``Electron_cutBased`` value of each level.
ELECTRON_CUTBASED = {"veto": 1, "loose": 2, "medium": 3, "tight": 4}
#: MVA working point (with isolation) closest in signal efficiency to each cut-based level.
ELECTRON_MVA_FOR = {"veto": "WP90", "loose": "WP90", "medium": "WP80", "tight": "WP80"}

#: Boolean muon ID branch (without ``Muon_``) of each level.
MUON_ID = {"loose": "looseId", "medium": "mediumId", "tight": "tightId"}
#: ``Muon_pfRelIso04_all`` upper cut and the equivalent ``Muon_pfIsoId`` minimum of each isolation level.
MUON_ISO = {"loose": 0.25, "tight": 0.15}
MUON_PFISOID = {"loose": 2, "tight": 4}

#: ``Photon_cutBased`` value and ``Photon_cutBasedBitmap`` bit of each level.
PHOTON_CUTBASED = {"loose": 1, "medium": 2, "tight": 3}
PHOTON_BITMAP = {"loose": 1, "medium": 2, "tight": 4}
PHOTON_MVA_FOR = {"loose": "WP90", "medium": "WP80", "tight": "WP80"}


def jet_id_bits(jet_id: np.ndarray, level: str) -> np.ndarray:
    """Jets passing ``level`` ("tight" or "tightLepVeto") by their ``Jet_jetId`` bit.

    Examples
    --------
    >>> jet_id_bits(np.array([0, 2, 6, 3]), "tight").tolist()
    [False, True, True, True]
    """
    return (np.asarray(jet_id).astype(np.int64, copy=False) & JET_ID_BITS[level]) > 0


def jet_id_v12_fix(
    jet_id: np.ndarray,
    abs_eta: np.ndarray,
    neHEF: np.ndarray,
    neEmEF: np.ndarray,
    chEmEF: np.ndarray,
    muEF: np.ndarray,
    level: str,
) -> np.ndarray:
    """NanoAOD v12 jet ID with JME's fix for |eta| > 2.7 (JME coordination issue 117, JetID13p6TeV).

    Examples
    --------
    >>> one = np.ones(3)
    >>> jet_id_v12_fix(np.array([2, 2, 2]), np.array([1.0, 2.8, 3.5]), np.array([0.5, 0.995, 0.5]),
    ...                np.array([0.5, 0.5, 0.5]), 0.1 * one, 0.1 * one, "tight").tolist()
    [True, False, False]
    """
    bit = jet_id_bits(jet_id, "tight")
    tight = bit & np.where(abs_eta <= 2.7, True, np.where(abs_eta <= 3.0, neHEF < 0.99, neEmEF < 0.4))
    if level == "tight":
        return tight
    return tight & ((abs_eta > 2.7) | ((muEF < 0.8) & (chEmEF < 0.8)))


def jet_id_run3(
    abs_eta: np.ndarray,
    neHEF: np.ndarray,
    neEmEF: np.ndarray,
    chHEF: np.ndarray,
    chEmEF: np.ndarray,
    muEF: np.ndarray,
    chMultiplicity: np.ndarray,
    neMultiplicity: np.ndarray,
    level: str,
) -> np.ndarray:
    """Run 3 AK4 PUPPI jet ID from energy fractions and multiplicities (JetID13p6TeV; NanoAOD v13+).

    Tight: |eta| <= 2.6: neHEF < 0.99, neEmEF < 0.9, chMult + neMult > 1, chHEF > 0.01, chMult > 0;
    2.6 < |eta| <= 2.7: neHEF < 0.90, neEmEF < 0.99; 2.7 < |eta| <= 3.0: neHEF < 0.99;
    |eta| > 3.0: neMult >= 2, neEmEF < 0.4. TightLepVeto adds muEF < 0.8 and chEmEF < 0.8 for |eta| <= 2.7.

    Examples
    --------
    >>> a = np.array
    >>> jet_id_run3(a([0.5, 0.5, 3.5]), a([0.2, 0.2, 0.9]), a([0.2, 0.2, 0.3]), a([0.5, 0.5, 0.0]),
    ...             a([0.05, 0.9, 0.0]), a([0.0, 0.0, 0.0]), a([5, 5, 0]), a([5, 5, 3]), "tightLepVeto").tolist()
    [True, False, True]
    """
    ch = chMultiplicity.astype(np.int64, copy=False)
    ne = neMultiplicity.astype(np.int64, copy=False)
    central = (neHEF < 0.99) & (neEmEF < 0.9) & (ch + ne > 1) & (chHEF > 0.01) & (ch > 0)
    tight = np.where(
        abs_eta <= 2.6,
        central,
        np.where(
            abs_eta <= 2.7,
            (neHEF < 0.90) & (neEmEF < 0.99),
            np.where(abs_eta <= 3.0, neHEF < 0.99, (ne >= 2) & (neEmEF < 0.4)),
        ),
    )
    if level == "tight":
        return tight
    return tight & ((abs_eta > 2.7) | ((muEF < 0.8) & (chEmEF < 0.8)))
