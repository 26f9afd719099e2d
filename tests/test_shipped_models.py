"""Every shipped model holds the metric stored in its own metadata on freshly simulated events.

The test is generic: it reads from each model file what to check, so it holds unchanged when the shipped
models are retrained and replaced.

- ``classifier`` head: the task's processes are ``data.signal`` and ``data.background``; class 0 is the
  signal; the stored metric is ``metrics.auc`` measured on ``metrics.n_signal`` + ``metrics.n_background``
  test events.
- ``multiclass`` head (the pretrained backbone): the processes are ``class_names`` (== ``data.processes``);
  the stored metric is ``metrics.val_accuracy`` on ``data.val_events`` validation events.

Fresh events come from the project's own Pythia 8 simulation with a fixed seed that differs from the
training simulation's, and are scored through ``HEPFMScore`` on the NanoAOD files, the path an analysis
uses. The fresh value must agree with the stored one within 3 standard errors of their difference: both
are estimates from finite samples of the same distribution, so the variance of the difference is the sum
of the two variances, each evaluated at the stored value:

- AUC: Hanley & McNeil, "The meaning and use of the area under a receiver operating characteristic (ROC)
  curve", Radiology 143 (1982) 29-36, eq. (2):
  ``SE^2 = [A(1-A) + (n_s-1)(Q1-A^2) + (n_b-1)(Q2-A^2)] / (n_s n_b)``, ``Q1 = A/(2-A)``,
  ``Q2 = 2A^2/(1+A)``.
- accuracy: binomial, ``SE^2 = p(1-p) / n``.

Nothing is special-cased per model: a model whose stored metric does not describe its weights on the
current simulation fails, whatever its task.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from coffea_hepfm import models
from coffea_hepfm.model import load_model

#: fresh-sample seed; the shipped models' training simulation used --seed 1
FRESH_SEED = 20261124
#: fresh events per process (CI budget: all models together in well under 90 s on 2 cores)
EVENTS = 1000
#: agreement required, in standard errors of the difference
N_SIGMA = 3.0

SHIPPED = models.available()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small graphs: one intra-op thread is faster than two, and far faster on a busy 2-core machine.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hanley_mcneil_se(auc: float, n_signal: int, n_background: int) -> float:
    """Standard error of an AUC from ``n_signal`` and ``n_background`` events (Hanley & McNeil 1982).

    >>> round(hanley_mcneil_se(0.5, 2000, 2000), 4)
    0.0091
    """
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    var = auc * (1 - auc) + (n_signal - 1) * (q1 - auc**2) + (n_background - 1) * (q2 - auc**2)
    return math.sqrt(var / (n_signal * n_background))


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` events."""
    return math.sqrt(p * (1 - p) / n)


def what_to_check(meta: dict) -> dict:
    """From a model's metadata: the processes to simulate (label order), the metric, its stored value and
    the sample size it was measured on."""
    kind, data, metrics = meta["head"], meta.get("data", {}), meta.get("metrics", {})
    if kind == "classifier":
        n = (int(metrics["n_signal"]), int(metrics["n_background"]))
        return {
            "processes": [data["signal"], data["background"]],
            "metric": "auc",
            "stored": metrics["auc"],
            "n": n,
        }
    if kind == "multiclass":
        assert meta["class_names"] == data["processes"], (
            "multiclass outputs must be the pretraining processes"
        )
        return {
            "processes": list(data["processes"]),
            "metric": "val_accuracy",
            "stored": metrics["val_accuracy"],
            "n": int(data["val_events"]),
        }
    pytest.fail(f"no metric check for a shipped {kind!r} model: add one to {__name__}")


@pytest.fixture(scope="module")
def fresh_files(tmp_path_factory) -> dict:
    """{process: [NanoAOD files]}: EVENTS fresh events of every process any shipped model needs."""
    from coffea_hepfm.simulation import simulate

    needed = sorted({p for name in SHIPPED for p in what_to_check(load_model(name).meta)["processes"]})
    out = tmp_path_factory.mktemp("fresh")
    return simulate(
        needed, n_events=EVENTS, seed=FRESH_SEED, out_dir=out, workers=0, chunk_size=EVENTS, progress=False
    )


def _probabilities(name: str, files: list) -> np.ndarray:
    """``[events, classes]`` probabilities from HEPFMScore on the NanoAOD files, in class_names order."""
    import awkward as ak

    from coffea_hepfm import HEPFMScore
    from coffea_hepfm.nanoaod import open_events

    scorer = HEPFMScore(name, device="cpu")
    parts = []
    for f in files:
        out = scorer(open_events(f))
        parts.append(np.stack([ak.to_numpy(out[c]) for c in scorer.class_names_], axis=1))
    return np.concatenate(parts)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_holds_its_stored_metric(name, fresh_files):
    from sklearn.metrics import roc_auc_score

    loaded = load_model(name)
    check = what_to_check(loaded.meta)
    probs = [_probabilities(name, fresh_files[p]) for p in check["processes"]]
    stored = float(check["stored"])
    if check["metric"] == "auc":
        signal, background = probs[0][:, 0], probs[1][:, 0]  # class 0 is the signal
        truth = np.r_[np.ones(len(signal), bool), np.zeros(len(background), bool)]
        fresh = float(roc_auc_score(truth, np.r_[signal, background]))
        se = math.hypot(
            hanley_mcneil_se(stored, *check["n"]), hanley_mcneil_se(stored, len(signal), len(background))
        )
    else:
        correct = np.concatenate([p.argmax(axis=1) == k for k, p in enumerate(probs)])
        fresh = float(correct.mean())
        se = math.hypot(binomial_se(stored, check["n"]), binomial_se(stored, len(correct)))
    print(f"{name}: {check['metric']} stored {stored:.4f}, fresh {fresh:.4f}, tolerance {N_SIGMA * se:.4f}")
    assert abs(fresh - stored) <= N_SIGMA * se, (
        f"{name}: {check['metric']} on {EVENTS} fresh events per process is {fresh:.4f}, but the model file "
        f"records {stored:.4f} (allowed difference {N_SIGMA} x {se:.4f}); the stored metric does not describe "
        "these weights on the current simulation"
    )
