r"""Parton-level validation of the CP-mixed ttH samples, and the figures of ``docs/results.md``.

``coffea-hepfm cp-validate`` runs :func:`validate`:

* Pythia SM ttH hard processes (process level only) and their ``R = |M(90)|^2 / |M(0)|^2``;
* ``sigma(alpha) / sigma(0) = <cos^2 alpha + sin^2 alpha R>`` (parton densities cancel), per initial
  state and in total, with its statistical error;
* the ROC AUC of the matrix-element ratio itself, CP-even vs CP-odd (and vs CP-mixed): ``R`` is the
  likelihood ratio, hence the optimal discriminant at parton level; its AUC is the ceiling for any
  classifier;
* an independent CP-odd sample made by the engine's accept-reject step, compared with SM events
  reweighted to ``alpha = 90 deg``;
* optionally (``sim_dir``), the same comparison end to end on simulated NanoAOD files (``tth_aa`` with
  ``LHEReweightingWeight[alpha = 90]`` against ``tta_aa``), from the hard-process ``GenPart`` entries;
* optionally (``route_events``), :func:`route_check`: SM ttH from Pythia's internal process against the
  Les Houches route, at reconstructed level.

Observables (lab frame, after Gunion & He, PRL 76 (1996) 4468 and Boudjema et al., arXiv:1501.03157):
``pt_h``; ``dphi_tt = |Delta phi(t, tbar)|``; ``deta_tt = |Delta eta(t, tbar)|``;
``b2 = (p_t x z).(p_tbar x z) / (|p_t| |p_tbar|)``; ``b4 = p_t^z p_tbar^z / (|p_t| |p_tbar|)``.

Examples
--------
>>> import numpy as np
>>> t = np.array([[300.0, 100.0, 0.0, 200.0]]); tb = np.array([[300.0, -100.0, 0.0, 200.0]])
>>> obs = parton_observables(t, tb, t)
>>> round(float(obs["dphi_tt"][0]), 4), round(float(obs["b4"][0]), 4), round(float(obs["b2"][0]), 4)
(3.1416, 0.8, -0.2)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Binning of the figures: (label, bins, low, high).
OBSERVABLES = {
    "pt_h": (r"Higgs $p_T$ [GeV]", 30, 0.0, 600.0),
    "dphi_tt": (r"$|\Delta\phi(t, \bar t)|$", 24, 0.0, np.pi),
    "deta_tt": (r"$|\Delta\eta(t, \bar t)|$", 24, 0.0, 6.0),
    "b2": (r"$b_2$", 24, -1.0, 1.0),
    "b4": (r"$b_4$", 24, -1.0, 1.0),
}


def parton_observables(t: np.ndarray, tbar: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
    """The CP-sensitive observables from ``[N, 4]`` (E, px, py, pz) momenta of t, tbar and H."""
    pt = lambda v: np.hypot(v[:, 1], v[:, 2])  # noqa: E731
    eta = lambda v: np.arcsinh(v[:, 3] / np.maximum(pt(v), 1e-9))  # noqa: E731
    norm = np.linalg.norm(t[:, 1:], axis=1) * np.linalg.norm(tbar[:, 1:], axis=1)
    dphi = np.arctan2(t[:, 2], t[:, 1]) - np.arctan2(tbar[:, 2], tbar[:, 1])
    return {
        "pt_h": pt(h),
        "dphi_tt": np.abs((dphi + np.pi) % (2 * np.pi) - np.pi),
        "deta_tt": np.abs(eta(t) - eta(tbar)),
        "b2": (t[:, 1] * tbar[:, 1] + t[:, 2] * tbar[:, 2]) / norm,
        "b4": t[:, 3] * tbar[:, 3] / norm,
    }


def weighted_mean(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Mean of ``x`` with weights ``w`` and its statistical error (effective-entries estimate)."""
    mean = float(np.sum(w * x) / np.sum(w))
    var = float(np.sum(w * (x - mean) ** 2) / np.sum(w))
    n_eff = float(np.sum(w) ** 2 / np.sum(w**2))
    return mean, float(np.sqrt(var / n_eff))


def ratio_summary(r: np.ndarray, is_gg: np.ndarray) -> dict:
    """``sigma(90) / sigma(0) = <R>`` in total and per initial state, with statistical errors."""
    out = {}
    for name, sel in (("all", np.ones_like(is_gg)), ("gg", is_gg), ("qqbar", ~is_gg)):
        x = r[sel]
        out[name] = {"ratio": float(x.mean()), "error": float(x.std() / np.sqrt(len(x))), "n": int(len(x))}
    out["gg_fraction"] = float(is_gg.mean())
    return out


def me_ratio_auc(r: np.ndarray, alpha_deg: float = 90.0) -> float:
    """ROC AUC of ``R`` separating SM events from the same events weighted to ``alpha_deg``."""
    from sklearn.metrics import roc_auc_score

    a = np.deg2rad(alpha_deg)
    w = np.cos(a) ** 2 + np.sin(a) ** 2 * r
    y = np.r_[np.zeros(len(r)), np.ones(len(r))]
    return float(roc_auc_score(y, np.r_[r, r], sample_weight=np.r_[np.ones(len(r)), w / w.mean()]))


def _genpart_hard(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t, tbar, H four-momenta (hard-process GenPart entries) and LHEReweightingWeight of one file."""
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        a = f["Events"].arrays(
            [
                "GenPart_pt",
                "GenPart_eta",
                "GenPart_phi",
                "GenPart_mass",
                "GenPart_pdgId",
                "GenPart_statusFlags",
                "LHEReweightingWeight",
            ]
        )
    hard = (a.GenPart_statusFlags & (1 << 7)) != 0

    def first(pid):
        sel = hard & (a.GenPart_pdgId == pid)
        pt, eta, phi, m = (
            ak.to_numpy(ak.firsts(a[f"GenPart_{k}"][sel])) for k in ("pt", "eta", "phi", "mass")
        )
        pz, e = pt * np.sinh(eta), np.sqrt((pt * np.cosh(eta)) ** 2 + m**2)
        return np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pz], axis=1).astype(float)

    return first(6), first(-6), first(25), ak.to_numpy(a.LHEReweightingWeight).astype(float)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _figure(samples: dict, out: Path, title: str) -> Path:
    """One row of normalised distributions: lines for weighted samples, points for unweighted checks."""
    import hist
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    fig, axes = plt.subplots(1, len(OBSERVABLES), figsize=(4.2 * len(OBSERVABLES), 3.8))
    for ax, (name, (label, bins, lo, hi)) in zip(axes, OBSERVABLES.items(), strict=True):
        for legend, (obs, w, style) in samples.items():
            h = hist.Hist(
                hist.axis.Regular(bins, lo, hi, name=name, label=label), storage=hist.storage.Weight()
            )
            h.fill(np.clip(obs[name], lo, hi - 1e-9 * (hi - lo)), weight=w)
            total = h.sum().value * (hi - lo) / bins
            if style == "points":
                mplhep.histplot(h / total, ax=ax, histtype="errorbar", label=legend, color="k", markersize=3)
            else:
                mplhep.histplot(h / total, ax=ax, histtype="step", label=legend, yerr=False, **style)
        ax.set_xlabel(label)
        ax.set_ylabel("normalised")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def validate(
    n_events: int = 50_000,
    n_odd: int = 3000,
    seed: int = 1,
    out_dir: str | os.PathLike = "docs/figures",
    sim_dir: str | os.PathLike | None = None,
    route_events: int = 0,
) -> dict:
    """Run the parton-level validation, write ``cp_*.png`` and ``cp_validation.json`` into ``out_dir``.

    ``n_events`` SM ttH hard processes; ``n_odd`` accepted events of the independent CP-odd sample
    (about 40 process-level events each); ``route_events`` > 0 adds :func:`route_check`. Returns the
    summary written to the JSON file.
    """
    from coffea_hepfm.simulation.generator import chunk_seed
    from coffea_hepfm.simulation.reweight import hard_events, process_level_pythia, unweighted_hard_events

    out_dir = Path(out_dir)
    pythia = process_level_pythia("tth", chunk_seed(seed, "cp-validate", 0))
    parts = [
        hard_events(pythia.nextBatch(min(20_000, n_events - k), 10.0)) for k in range(0, n_events, 20_000)
    ]
    p = np.concatenate([e.p for e in parts])
    is_gg = np.concatenate([e.is_gg for e in parts])
    r = np.concatenate([e.ratio() for e in parts])
    obs = parton_observables(p[:, 2], p[:, 3], p[:, 4])
    odd = unweighted_hard_events("tta_aa", chunk_seed(seed, "cp-validate", 1), n_odd, 90.0)
    obs_odd = parton_observables(odd.events.p[:, 2], odd.events.p[:, 3], odd.events.p[:, 4])
    one = np.ones(len(r))
    summary = {
        "n_events": n_events,
        "sigma_ratio_90_over_0": ratio_summary(r, is_gg),
        "sigma_ratio_45_over_0": float(np.mean(0.5 + 0.5 * r)),
        "auc_me_ratio": {"even_vs_odd": me_ratio_auc(r, 90.0), "even_vs_mixed45": me_ratio_auc(r, 45.0)},
        "r_max_seen": float(r.max()),
        "unweighting": {
            "n_accepted": odd.n_accepted,
            "n_process_level": odd.n_process_level,
            "efficiency": odd.n_accepted / odd.n_process_level,
            "n_overweight": odd.n_overweight,
        },
        "means": {},
    }
    for name in OBSERVABLES:
        summary["means"][name] = {
            "even": weighted_mean(obs[name], one),
            "odd_reweighted": weighted_mean(obs[name], r),
            "odd_unweighted": weighted_mean(obs_odd[name], odd.gen_weight),
            "mixed45_reweighted": weighted_mean(obs[name], 0.5 + 0.5 * r),
        }
    figures = [
        _figure(
            {
                r"CP-even ($\alpha = 0$)": (obs, one, {"color": "C0"}),
                r"CP-mixed ($\alpha = 45^\circ$, reweighted)": (obs, 0.5 + 0.5 * r, {"color": "C2"}),
                r"CP-odd ($\alpha = 90^\circ$, reweighted)": (obs, r, {"color": "C3"}),
                "CP-odd, accept-reject sample": (obs_odd, odd.gen_weight, "points"),
            },
            out_dir / "cp_parton_distributions.png",
            f"pp -> t tbar phi, 13 TeV, parton level (Pythia 8 SM ttH x |M|^2 ratio, {n_events} events)",
        )
    ]
    if sim_dir is not None:
        summary["nanoaod"] = _nanoaod_check(Path(sim_dir), out_dir, figures)
    if route_events > 0:
        summary["route_check"] = route_check(route_events, seed)
    summary["figures"] = [os.fspath(f) for f in figures]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".cp_validation.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out_dir / "cp_validation.json")
    return summary


def _nanoaod_check(sim_dir: Path, out_dir: Path, figures: list) -> dict:
    """``tth_aa`` reweighted to 90 deg vs ``tta_aa``, from the simulated files' hard-process GenPart."""
    from coffea_hepfm.simulation.reweight import ALPHA_GRID_DEG

    i90 = ALPHA_GRID_DEG.index(90.0)
    loaded = {}
    for proc in ("tth_aa", "tta_aa"):
        files = sorted((sim_dir / proc).glob("[!.]*.root"))
        if not files:
            raise FileNotFoundError(f"no simulated {proc} files in {sim_dir / proc}")
        parts = [_genpart_hard(f) for f in files]
        loaded[proc] = [np.concatenate([q[i] for q in parts]) for i in range(4)]
    even, odd = loaded["tth_aa"], loaded["tta_aa"]
    obs_even, obs_odd = parton_observables(*even[:3]), parton_observables(*odd[:3])
    w90 = even[3][:, i90]
    figures.append(
        _figure(
            {
                "tth_aa (CP-even)": (obs_even, np.ones(len(w90)), {"color": "C0"}),
                r"tth_aa $\times$ LHEReweightingWeight[$\alpha = 90^\circ$]": (
                    obs_even,
                    w90,
                    {"color": "C3"},
                ),
                "tta_aa (CP-odd, unweighted)": (obs_odd, np.ones(len(obs_odd["pt_h"])), "points"),
            },
            out_dir / "cp_nanoaod_reweighting.png",
            f"simulated NanoAOD, hard-process GenPart ({len(w90)} tth_aa, {len(obs_odd['pt_h'])} tta_aa events)",
        )
    )
    return {
        name: {
            "tth_aa": weighted_mean(obs_even[name], np.ones(len(w90))),
            "tth_aa_reweighted_90": weighted_mean(obs_even[name], w90),
            "tta_aa": weighted_mean(obs_odd[name], np.ones(len(obs_odd[name]))),
        }
        for name in OBSERVABLES
    }


def _reco_observables(batches: list[dict]) -> dict[str, np.ndarray]:
    """Per-event reconstructed observables of detector outputs (jets pT > 30 GeV, |eta| < 2.4)."""
    from coffea_hepfm.simulation.response import BTAG_WP
    from coffea_hepfm.simulation.writer import concatenate_batches

    data = concatenate_batches(batches)
    counts, jet = data["collections"]["Jet"]
    evt = np.repeat(np.arange(len(counts)), counts)
    good = (jet["pt"] > 30.0) & (np.abs(jet["eta"]) < 2.4)
    n = len(counts)
    pcounts, pho = data["collections"]["Photon"]
    first = np.cumsum(pcounts) - pcounts
    two = pcounts >= 2
    i1, i2 = first[two], first[two] + 1
    px = pho["pt"][i1] * np.cos(pho["phi"][i1]) + pho["pt"][i2] * np.cos(pho["phi"][i2])
    py = pho["pt"][i1] * np.sin(pho["phi"][i1]) + pho["pt"][i2] * np.sin(pho["phi"][i2])
    return {
        "n_jets": np.bincount(evt[good], minlength=n).astype(float),
        "n_bjets": np.bincount(evt[good & (jet["btagDeepFlavB"] > BTAG_WP["medium"])], minlength=n).astype(
            float
        ),
        "ht": np.bincount(evt[good], weights=jet["pt"][good], minlength=n),
        "met": np.asarray(data["scalars"]["MET_pt"], dtype=float),
        "pt_aa": np.hypot(px, py),
    }


def route_check(n_events: int = 3000, seed: int = 1) -> dict:
    """SM ``tth_aa`` from Pythia's internal ttH process vs the Les Houches route of every ttH sample.

    Both are showered, hadronised and reconstructed by the same detector; returns the means of a few
    reconstructed observables per route and the two-sample Kolmogorov-Smirnov p-values.
    """
    from scipy.stats import ks_2samp

    from coffea_hepfm.simulation.detector import reconstruct
    from coffea_hepfm.simulation.generator import chunk_seed, generate_batches, make_pythia
    from coffea_hepfm.simulation.reweight import reweighted_batches

    rng = np.random.default_rng([seed, 9])
    pythia = make_pythia("tth_aa", chunk_seed(seed, "route-internal", 0))
    internal = [reconstruct(prt, rng) for prt in generate_batches(pythia, n_events, 500)]
    lhe = [
        reconstruct(prt, rng)
        for prt, _, _ in reweighted_batches(
            "tth_aa", chunk_seed(seed, "route-lhe", 0), n_events, batch_size=500
        )
    ]
    a, b = _reco_observables(internal), _reco_observables(lhe)
    return {
        name: {
            "internal": float(a[name].mean()),
            "lhe": float(b[name].mean()),
            "ks_pvalue": float(ks_2samp(a[name], b[name]).pvalue),
        }
        for name in a
    }
