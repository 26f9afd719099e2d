"""Physics validation of simulated samples: observables, resonance peaks, and PNG plots.

Files are read with :func:`coffea_hepfm.nanoaod.open_events`, the same path as CMS NanoAOD.

Examples
--------
>>> import numpy as np
>>> peak_position(np.array([90.0, 91.0, 92.0, 300.0]), 70.0, 110.0)   # values outside the window ignored
91.0
>>> np.isnan(peak_position(np.array([]), 70.0, 110.0))                  # empty window: NaN, not an error
True
"""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np

BTAG_MEDIUM = 0.2783

# name -> (axis label, bins, lo, hi)
PLOTS = {
    "n_jets": ("jets (pT > 25 GeV, |eta| < 2.4)", 12, -0.5, 11.5),
    "n_bjets": ("b-tagged jets (DeepJet medium)", 6, -0.5, 5.5),
    "lead_jet_pt": ("leading jet pT [GeV]", 40, 0, 400),
    "lead_lepton_pt": ("leading lepton pT [GeV]", 40, 0, 200),
    "lead_photon_pt": ("leading photon pT [GeV]", 40, 0, 200),
    "m_bb": ("m(bb) [GeV]", 40, 0, 400),
    "m_gg": ("m(gamma gamma) [GeV]", 40, 100, 150),
    "m_ll": ("m(ll) [GeV]", 40, 60, 120),
    "met": ("MET [GeV]", 40, 0, 300),
}


def _pair_mass(objs) -> np.ndarray:
    """Invariant mass of the two leading objects in events with at least two."""
    two = objs[ak.num(objs) >= 2]
    return ak.to_numpy((two[:, 0] + two[:, 1]).mass).astype(np.float64)


def _os_pair_mass(leptons) -> np.ndarray:
    two = leptons[ak.num(leptons) >= 2]
    opposite = two[:, 0].charge * two[:, 1].charge < 0
    two = two[opposite]
    return ak.to_numpy((two[:, 0] + two[:, 1]).mass).astype(np.float64)


def _leading(values) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(ak.firsts(values), np.nan)).astype(np.float64)


def observables(events) -> dict[str, np.ndarray]:
    """Validation observables of NanoAOD ``events`` (per-event arrays; pair masses per selected event)."""
    jets = events.Jet[(events.Jet.pt > 25) & (np.abs(events.Jet.eta) < 2.4) & ((events.Jet.jetId & 2) > 0)]
    bjets = jets[jets.btagDeepFlavB > BTAG_MEDIUM]
    ele = events.Electron[(events.Electron.pt > 10) & (events.Electron.pfRelIso03_all < 0.15)]
    mu = events.Muon[(events.Muon.pt > 10) & (events.Muon.pfRelIso03_all < 0.25) & events.Muon.mediumId]
    lep_pt = ak.sort(ak.concatenate([ele.pt, mu.pt], axis=1), ascending=False)
    out = {
        "n_jets": ak.to_numpy(ak.num(jets)).astype(np.float64),
        "n_bjets": ak.to_numpy(ak.num(bjets)).astype(np.float64),
        "lead_jet_pt": _leading(jets.pt),
        "lead_lepton_pt": _leading(lep_pt),
        "m_bb": _pair_mass(bjets),
        "m_ll": np.concatenate([_os_pair_mass(ele), _os_pair_mass(mu)]),
        "met": ak.to_numpy(events.MET.pt).astype(np.float64),
    }
    if "Photon" in events.fields:
        pho = events.Photon[(events.Photon.pt > 20) & (events.Photon.pfRelIso03_all < 0.15)]
        out["lead_photon_pt"] = _leading(pho.pt)
        out["m_gg"] = _pair_mass(pho)
    return out


def process_observables(files: list[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Observables of all ``files`` (read one at a time), concatenated."""
    from coffea_hepfm.nanoaod import open_events

    parts = [observables(open_events(f)) for f in files]
    return {k: np.concatenate([p[k] for p in parts if k in p]) for k in parts[0]} if parts else {}


def peak_position(values: np.ndarray, lo: float, hi: float) -> float:
    """Median of ``values`` inside the window ``[lo, hi]`` (NaN if none): a robust peak estimate for a
    resonance on a small background."""
    inside = values[(values >= lo) & (values <= hi)]
    return float(np.median(inside)) if inside.size else float("nan")


def plot_process(name: str, obs: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """One PNG with a panel per observable (hist + mplhep)."""
    import hist
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    fig, axes = plt.subplots(3, 3, figsize=(15, 12))
    for ax, (key, (label, bins, lo, hi)) in zip(axes.flat, PLOTS.items(), strict=True):
        h = hist.Hist.new.Reg(bins, lo, hi, name=key, label=label).Double()
        values = obs.get(key, np.array([]))
        h.fill(values[np.isfinite(values)])
        mplhep.histplot(h, ax=ax, histtype="fill", alpha=0.6)
        ax.set_xlabel(label)
        ax.set_ylabel("events")
    fig.suptitle(f"coffea-hepfm simulation: {name}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def validate_dir(sim_dir: str | os.PathLike, plot_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    """Plot every process folder of ``sim_dir`` into ``plot_dir`` (default ``sim_dir/plots``).

    Returns ``{process: {"n_events", "plot", "m_gg_peak", "m_ll_peak", "mean_n_jets", ...}}``.
    Raises ``FileNotFoundError`` if ``sim_dir`` holds no simulated chunk files.
    """
    sim_dir = Path(sim_dir)
    plot_dir = Path(plot_dir) if plot_dir is not None else sim_dir / "plots"
    procs = {
        d.name: sorted(d.glob("*_[0-9][0-9][0-9][0-9][0-9].root"))
        for d in sorted(sim_dir.iterdir())
        if d.is_dir()
    }
    procs = {k: v for k, v in procs.items() if v}
    if not procs:
        raise FileNotFoundError(f"no simulated chunk files (<process>/<process>_NNNNN.root) under {sim_dir}")
    plot_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, files in procs.items():
        obs = process_observables(files)
        summary[name] = {
            "n_events": int(len(obs["met"])),
            "plot": str(plot_process(name, obs, plot_dir / f"{name}.png")),
            "mean_n_jets": float(np.mean(obs["n_jets"])),
            "mean_n_bjets": float(np.mean(obs["n_bjets"])),
            "m_gg_peak": peak_position(obs.get("m_gg", np.array([])), 110.0, 140.0),
            "m_ll_peak": peak_position(obs["m_ll"], 76.0, 106.0),
            "mean_met": float(np.mean(obs["met"])),
        }
    return summary
