"""Serving exports: TorchScript and ONNX files of a classifier or ``ScoringModule``, dynamic in N, E and B.

ONNX has two exporters in torch. ``dynamo=True`` (torch.export; needs the ``onnxscript`` package) writes
the aggregations as ``ScatterND(add)`` and runs ~4x faster in onnxruntime on CPU; ``dynamo=False`` (the
deprecated TorchScript-based exporter) writes ``ScatterElements(add)``, which is correct but slow in
onnxruntime. Both are checked against torch in ``tests/test_model.py``.

Examples
--------
>>> loaded = load_model("tth-vs-ttbar")                                   # doctest: +SKIP
>>> export_onnx(loaded.scoring_module(), "model.onnx")                   # doctest: +SKIP
>>> export_torchscript(loaded.scoring_module(), "model.pt")              # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch

from coffea_hepfm.model.heads import HEPFMClassifier, ScoringModule

__all__ = [
    "INPUT_NAMES",
    "export_onnx",
    "export_torchscript",
    "example_inputs",
    "has_dynamo_exporter",
    "output_names",
]

INPUT_NAMES = ("x", "edge_index", "edge_attr", "u", "batch")


def has_dynamo_exporter() -> bool:
    """Whether ``torch.onnx.export(..., dynamo=True)`` can run (it needs ``onnxscript``)."""
    return importlib.util.find_spec("onnxscript") is not None


def output_names(module) -> list[str]:
    return ["probs", "embedding"] if isinstance(module, ScoringModule) else ["logits"]


def _backbone(module):
    clf = module.classifier if isinstance(module, ScoringModule) else module
    if not isinstance(clf, HEPFMClassifier):
        raise TypeError(f"export needs a HEPFMClassifier or ScoringModule, got {type(module).__name__}")
    return clf.backbone


def example_inputs(module, n_events: int = 4):
    """Small random graphs (3-5 nodes per event; sizes > 1 so no dimension is specialised)."""
    from coffea_hepfm.model.bench import random_graphs

    net = _backbone(module)
    counts = torch.arange(n_events) % 3 + 3
    return random_graphs(n_events, net.n_node, net.n_edge, net.n_global, node_counts=counts)


def _replace_into(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_torchscript(module, path: str | os.PathLike) -> Path:
    """``torch.jit.script(module)`` saved to ``path`` (eval mode), e.g. for Triton's PyTorch backend."""
    _backbone(module)
    scripted = torch.jit.script(module.eval())
    return _replace_into(Path(path), lambda t: scripted.save(str(t)))


def export_onnx(module, path: str | os.PathLike, *, dynamo: bool | None = None, opset: int = 18) -> Path:
    """Export ``module`` to ONNX with dynamic node, edge and event counts.

    Parameters
    ----------
    module : HEPFMClassifier or ScoringModule
        Outputs ``logits`` or ``probs, embedding`` (names as in :func:`output_names`).
    dynamo : bool, optional
        Exporter; default: ``True`` when ``onnxscript`` is installed.
    opset : int
        ONNX opset (>= 16 for scatter reductions).
    """
    _backbone(module)
    module = module.eval()
    if dynamo is None:
        dynamo = has_dynamo_exporter()
    example = example_inputs(module)
    outputs = output_names(module)
    path = Path(path)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # Only the exporters' known notes: torch.export's pytree deprecation and its note that
            # the shared axis names ("E" for edge_index and edge_attr) are merged; the legacy exporter's
            # own deprecation (it is what dynamo=False asks for).
            warnings.filterwarnings(
                "ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning
            )
            warnings.filterwarnings("ignore", r"# The axis name: \w+ will not be used", UserWarning)
            warnings.filterwarnings(
                "ignore", r"You are using the legacy TorchScript-based ONNX export", DeprecationWarning
            )
            warnings.filterwarnings(
                "ignore", r"The feature will be removed", DeprecationWarning, r"torch\.onnx"
            )
            if dynamo:
                n, e, b = torch.export.Dim("N"), torch.export.Dim("E"), torch.export.Dim("B")
                shapes = {
                    "x": {0: n},
                    "edge_index": {1: e},
                    "edge_attr": {0: e},
                    "u": {0: b},
                    "batch": {0: n},
                }
                torch.onnx.export(
                    module,
                    example,
                    str(tmp),
                    dynamo=True,
                    dynamic_shapes=shapes,
                    input_names=list(INPUT_NAMES),
                    output_names=outputs,
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
            else:
                axes = {
                    "x": {0: "N"},
                    "edge_index": {1: "E"},
                    "edge_attr": {0: "E"},
                    "u": {0: "B"},
                    "batch": {0: "N"},
                } | {name: {0: "B"} for name in outputs}
                torch.onnx.export(
                    module,
                    example,
                    str(tmp),
                    dynamo=False,
                    input_names=list(INPUT_NAMES),
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=min(opset, 17),
                )

    return _replace_into(path, write)
