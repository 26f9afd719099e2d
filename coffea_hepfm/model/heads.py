"""Task heads on the event embedding, the classifier that joins backbone and head, and the serving module.

Every head has ``kind`` (the ``"head"`` string in model files), ``n_outputs`` and ``get_config()``;
``build_head(config)`` rebuilds one from its config.

Examples
--------
>>> net = HEPFMNet(13, 4, 8)
>>> clf = HEPFMClassifier(net, ClassifierHead(2))
>>> logits = clf(x, edge_index, edge_attr, u, batch)  # [B, 2]  # doctest: +SKIP
>>> probs, emb = ScoringModule(clf)(x, edge_index, edge_attr, u, batch)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from coffea_hepfm.model.network import HEPFMNet

__all__ = [
    "HEADS",
    "ClassifierHead",
    "HEPFMClassifier",
    "MulticlassHead",
    "MultilabelHead",
    "ProjectionHead",
    "ScoringModule",
    "build_head",
]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class MulticlassHead(nn.Module):
    """One linear layer to ``n_classes`` logits (softmax / cross-entropy), for multiclass pretraining."""

    def __init__(self, n_classes: int, in_channels: int = 64):
        super().__init__()
        _check_positive(n_classes=n_classes, in_channels=in_channels)
        self.kind = "multiclass"
        self.n_outputs = n_classes
        self.in_channels = in_channels
        self.lin = nn.Linear(in_channels, n_classes)

    def get_config(self) -> dict:
        return {"kind": self.kind, "n_outputs": self.n_outputs, "in_channels": self.in_channels}

    def forward(self, emb: Tensor) -> Tensor:
        return self.lin(emb)


class MultilabelHead(nn.Module):
    """One linear layer to ``n_labels`` independent logits (sigmoid / binary cross-entropy)."""

    def __init__(self, n_labels: int, in_channels: int = 64):
        super().__init__()
        _check_positive(n_labels=n_labels, in_channels=in_channels)
        self.kind = "multilabel"
        self.n_outputs = n_labels
        self.in_channels = in_channels
        self.lin = nn.Linear(in_channels, n_labels)

    def get_config(self) -> dict:
        return {"kind": self.kind, "n_outputs": self.n_outputs, "in_channels": self.in_channels}

    def forward(self, emb: Tensor) -> Tensor:
        return self.lin(emb)


class ProjectionHead(nn.Module):
    """SimCLR projection ``Linear -> ReLU -> Linear`` to ``dim``; the loss normalises (not the head)."""

    def __init__(self, dim: int = 32, in_channels: int = 64, width: int = 64):
        super().__init__()
        _check_positive(dim=dim, in_channels=in_channels, width=width)
        self.kind = "projection"
        self.n_outputs = dim
        self.in_channels = in_channels
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(in_channels, width), nn.ReLU(), nn.Linear(width, dim))

    def get_config(self) -> dict:
        return {
            "kind": self.kind,
            "n_outputs": self.n_outputs,
            "in_channels": self.in_channels,
            "width": self.width,
        }

    def forward(self, emb: Tensor) -> Tensor:
        return self.mlp(emb)


class ClassifierHead(nn.Module):
    """Fine-tuning head ``Linear -> ReLU -> Dropout -> Linear`` to ``n_classes`` logits (2 for binary)."""

    def __init__(self, n_classes: int = 2, in_channels: int = 64, width: int = 64, dropout: float = 0.0):
        super().__init__()
        _check_positive(n_classes=n_classes, in_channels=in_channels, width=width)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.kind = "classifier"
        self.n_outputs = n_classes
        self.in_channels = in_channels
        self.width = width
        self.dropout = dropout
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, n_classes)
        )

    def get_config(self) -> dict:
        return {
            "kind": self.kind,
            "n_outputs": self.n_outputs,
            "in_channels": self.in_channels,
            "width": self.width,
            "dropout": self.dropout,
        }

    def forward(self, emb: Tensor) -> Tensor:
        return self.mlp(emb)


HEADS: dict[str, type[nn.Module]] = {
    "multiclass": MulticlassHead,
    "multilabel": MultilabelHead,
    "projection": ProjectionHead,
    "classifier": ClassifierHead,
}


def build_head(config: dict) -> nn.Module:
    """Rebuild a head from ``head.get_config()``.

    >>> build_head({"kind": "multilabel", "n_outputs": 6, "in_channels": 64})
    MultilabelHead(...)  # doctest: +SKIP
    >>> build_head({"kind": "regression", "n_outputs": 1})  # doctest: +SKIP
    ValueError: unknown head kind 'regression'; known: classifier, multiclass, multilabel, projection
    """
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; known: {', '.join(sorted(HEADS))}")
    n_outputs = config.pop("n_outputs")
    return HEADS[kind](n_outputs, **config)


class HEPFMClassifier(nn.Module):
    """A backbone :class:`HEPFMNet` plus a head: ``forward(x, edge_index, edge_attr, u, batch)`` -> ``[B, C]``.

    Parameters
    ----------
    backbone : HEPFMNet
    head : nn.Module
        One of :data:`HEADS`; its ``in_channels`` must equal ``backbone.hidden``.
    """

    def __init__(self, backbone: HEPFMNet, head: nn.Module):
        super().__init__()
        if getattr(head, "kind", None) not in HEADS:
            raise TypeError(f"head must be one of {sorted(HEADS)} heads, got {type(head).__name__}")
        if head.in_channels != backbone.hidden:
            raise ValueError(f"head.in_channels={head.in_channels} != backbone.hidden={backbone.hidden}")
        self.backbone = backbone
        self.head = head
        self.kind: str = head.kind
        self.n_outputs: int = head.n_outputs

    def get_config(self) -> dict:
        return {"backbone": self.backbone.get_config(), "head": self.head.get_config()}

    @property
    def multilabel(self) -> bool:
        return self.kind == "multilabel"

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        return self.head(self.backbone.embed(x, edge_index, edge_attr, u, batch))

    @torch.jit.export
    def forward_with_embedding(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(logits [B, C], embedding [B, hidden])`` from one backbone pass."""
        emb = self.backbone.embed(x, edge_index, edge_attr, u, batch)
        return self.head(emb), emb

    @torch.jit.export
    def embed(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor) -> Tensor:
        return self.backbone.embed(x, edge_index, edge_attr, u, batch)

    @torch.jit.export
    def layer_outputs(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor
    ) -> list[Tensor]:
        """The backbone's per-step graph representations (see :meth:`HEPFMNet.layer_outputs`)."""
        return self.backbone.layer_outputs(x, edge_index, edge_attr, u, batch)


class ScoringModule(nn.Module):
    """Serving wrapper: ``forward(...) -> (probabilities [B, C] float32, embedding [B, hidden])``.

    Probabilities are ``sigmoid`` of the logits for multilabel heads (and single-logit heads), else
    ``softmax`` over classes (a binary classifier has 2 logits, so column 1 is the signal probability).

    Parameters
    ----------
    classifier : HEPFMClassifier
    multilabel : bool, optional
        Defaults to ``classifier.kind == "multilabel"``.
    """

    def __init__(self, classifier: HEPFMClassifier, multilabel: bool | None = None):
        super().__init__()
        self.classifier = classifier
        if multilabel is None:
            multilabel = classifier.multilabel
        self.sigmoid: bool = bool(multilabel) or classifier.n_outputs == 1

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, u: Tensor, batch: Tensor
    ) -> tuple[Tensor, Tensor]:
        logits, emb = self.classifier.forward_with_embedding(x, edge_index, edge_attr, u, batch)
        logits = logits.float()
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)
        return probs, emb
