"""The coffea-hepfm graph network: layers, backbone, heads, and the safe model-file format.

>>> from coffea_hepfm.model import HEPFMNet, HEPFMClassifier, ClassifierHead, load_model
>>> clf = HEPFMClassifier(HEPFMNet(n_node=13, n_edge=4, n_global=8), ClassifierHead(2))
>>> logits = clf(x, edge_index, edge_attr, u, batch)  # the 5 tensors of GraphBatch.to_torch()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coffea_hepfm.lazy import attach

if TYPE_CHECKING:
    from coffea_hepfm.model.export import export_onnx, export_torchscript
    from coffea_hepfm.model.heads import (
        HEADS,
        ClassifierHead,
        HEPFMClassifier,
        MulticlassHead,
        MultilabelHead,
        ProjectionHead,
        ScoringModule,
        build_head,
    )
    from coffea_hepfm.model.io import (
        ChecksumMismatch,
        GraphSpecMismatch,
        LoadedModel,
        ModelFileError,
        UnsafeModelFile,
        UnverifiedModelFile,
        load_backbone,
        load_model,
        read_metadata,
        save_model,
    )
    from coffea_hepfm.model.layers import EdgeBlock, GlobalBlock, NodeBlock, scatter_sum
    from coffea_hepfm.model.network import HEPFMNet
    from coffea_hepfm.model.resave import resave_model

__all__ = [
    "HEADS",
    "ChecksumMismatch",
    "ClassifierHead",
    "EdgeBlock",
    "GlobalBlock",
    "GraphSpecMismatch",
    "HEPFMClassifier",
    "HEPFMNet",
    "LoadedModel",
    "ModelFileError",
    "MulticlassHead",
    "MultilabelHead",
    "NodeBlock",
    "ProjectionHead",
    "ScoringModule",
    "UnsafeModelFile",
    "UnverifiedModelFile",
    "build_head",
    "export_onnx",
    "export_torchscript",
    "load_backbone",
    "load_model",
    "read_metadata",
    "resave_model",
    "save_model",
    "scatter_sum",
]

# Names load their submodule on first use (coffea_hepfm.lazy): `coffea-hepfm --help` imports this
# package through its cli.py and must not pay for numpy/awkward/torch/coffea/pythia8mc.
_EXPORTS = {
    "export_onnx": "export",
    "export_torchscript": "export",
    "HEADS": "heads",
    "ClassifierHead": "heads",
    "HEPFMClassifier": "heads",
    "MulticlassHead": "heads",
    "MultilabelHead": "heads",
    "ProjectionHead": "heads",
    "ScoringModule": "heads",
    "build_head": "heads",
    "ChecksumMismatch": "io",
    "GraphSpecMismatch": "io",
    "LoadedModel": "io",
    "ModelFileError": "io",
    "UnsafeModelFile": "io",
    "UnverifiedModelFile": "io",
    "load_backbone": "io",
    "load_model": "io",
    "read_metadata": "io",
    "save_model": "io",
    "EdgeBlock": "layers",
    "GlobalBlock": "layers",
    "NodeBlock": "layers",
    "scatter_sum": "layers",
    "HEPFMNet": "network",
    "resave_model": "resave",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
