"""The coffea-hepfm graph network: layers, backbone, heads, and the safe model-file format.

>>> from coffea_hepfm.model import HEPFMNet, HEPFMClassifier, ClassifierHead, load_model
>>> clf = HEPFMClassifier(HEPFMNet(n_node=13, n_edge=4, n_global=8), ClassifierHead(2))
>>> logits = clf(x, edge_index, edge_attr, u, batch)  # the 5 tensors of GraphBatch.to_torch()  # doctest: +SKIP
"""

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
