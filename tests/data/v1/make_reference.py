"""Record the v1 fixture model's scores on every shared CMS NanoAOD file (``reference_scores.json``).

The fixture ``tth_vs_ttbar.safetensors`` is the shipped ``tth_vs_ttbar`` model as it was before graph
spec v2 (``hepfm-graph`` version 1). ``reference_scores.json`` was written by this script with the
graph code of that time (commit ce0ed8e); ``tests/test_graph_v1.py`` checks that today's code still gives
the same probabilities (within 1e-6), i.e. that v1 model files keep scoring with their own spec.

Run from anywhere (rewrites the reference; do so only for a deliberate change of v1 numbers)::

    python tests/data/v1/make_reference.py
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("HEPFM_SHARED", HERE.parents[2].parent / "shared")) / "data" / "nanoaod"
MODEL = HERE / "tth_vs_ttbar.safetensors"
#: Shared CMS files scored (ROOT TTree and RNTuple); ``nano_dy_empty.root`` checks the empty case.
FILES = (
    "nano_dy.root",
    "nano_dimuon.root",
    "nano_tt_v12.root",
    "nano_tree.root",
    "nano_dy_rntuple.root",
    "nano_dy_empty.root",
)


def score_file(path: Path) -> dict[str, list[float]]:
    """``{class name: [probability per event]}`` of the fixture model on one file (CPU, float32)."""
    import awkward as ak

    from coffea_hepfm.graph.errors import MissingCollectionWarning
    from coffea_hepfm.nanoaod import open_events
    from coffea_hepfm.score import HEPFMScore

    events = open_events(path)
    scorer = HEPFMScore(MODEL, device="cpu")
    with warnings.catch_warnings():
        # nano_tt_v12 has no Photon: the v1 spec treats it as empty and says so; expected here.
        warnings.simplefilter("ignore", MissingCollectionWarning)
        out = scorer(events)
    return {name: ak.to_list(out[name]) for name in out.fields}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ref = {name: score_file(SHARED / name) for name in FILES}
    target = HERE / "reference_scores.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ref, indent=1) + "\n")
    tmp.replace(target)
    print(f"wrote {target}: " + ", ".join(f"{k} {len(next(iter(v.values()), []))}" for k, v in ref.items()))


if __name__ == "__main__":
    main()
