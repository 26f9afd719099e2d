"""Write a Triton model repository for a coffea-hepfm model: ``export_model`` / ``export-triton``.

Layout (``NAME`` defaults to the model's name, ``V`` to 1)::

    REPO/NAME/config.pbtxt         dynamic batching, max_batch_size, the padded I/O of
                                   coffea_hepfm.triton.padded, and parameters (below)
    REPO/NAME/V/model.pt           TorchScript of PaddedScoringModule          (python, libtorch)
    REPO/NAME/V/model.py           coffea_hepfm/triton/backend_model.py        (python)
    REPO/NAME/V/model.onnx         the same graph for onnxruntime              (onnx)

``parameters`` carry what the client checks at first use: ``hepfm_graph_spec`` (the model's
``GraphSpec.to_dict()`` as JSON), ``hepfm_graph_spec_name``/``_version``, ``hepfm_class_names`` (JSON
list), ``hepfm_hidden``, ``hepfm_model_sha256`` and ``hepfm_wire_format``.

Backends: ``python`` runs on the ``tritonserver`` of ``nvidia-pytriton`` (the only one installable here)
and on any facility server with torch in its python-backend environment; ``libtorch`` (platform
``pytorch_libtorch``) and ``onnx`` (``onnxruntime_onnx``) are for facility servers that run those
backends. All three take the same inputs and give the same outputs.

Everything is written under a temporary directory next to ``REPO`` first and moved into place at the
end, so a failed export leaves nothing half-written.

Examples
--------
>>> export_model("tth_vs_ttbar", "repo")                              # doctest: +SKIP
PosixPath('repo/tth_vs_ttbar')
>>> export_model("tth_vs_ttbar", "repo", backend="tensorrt")          # doctest: +SKIP
Traceback (most recent call last):
ValueError: backend must be one of ('python', 'libtorch', 'onnx'), got 'tensorrt'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from coffea_hepfm.errors import HEPFMError
from coffea_hepfm.triton.padded import PaddedScoringModule
from coffea_hepfm.triton.wire import INPUTS, OUTPUTS, WIRE_FORMAT

__all__ = ["BACKENDS", "WIRE_FORMAT", "ExportError", "export_model", "model_config_text", "run_exported"]

BACKENDS = ("python", "libtorch", "onnx")
DEFAULT_MAX_BATCH = 4096
VERIFY_ATOL = 1e-5
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ExportError(HEPFMError, ValueError):
    """Bad export arguments, or an exported file that does not reproduce the model."""


def _pbtxt_str(value: str) -> str:
    # JSON string escaping (\" \\ \n, ASCII only) is valid protobuf text-format escaping.
    return json.dumps(value, ensure_ascii=True)


def model_config_text(
    name: str,
    backend: str,
    spec,
    n_classes: int,
    hidden: int,
    max_batch_size: int,
    parameters: dict[str, str],
    instances: int = 1,
    kind: str = "KIND_CPU",
    queue_delay_us: int = 2000,
) -> str:
    """The ``config.pbtxt`` text for a padded coffea-hepfm model (see :mod:`coffea_hepfm.triton.padded`)."""
    head = {
        "python": 'backend: "python"',
        "libtorch": 'platform: "pytorch_libtorch"\ndefault_model_filename: "model.pt"',
        "onnx": 'platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"',
    }[backend]
    dims = {
        INPUTS[0]: ("TYPE_FP32", [spec.max_nodes, spec.n_node_features]),
        INPUTS[1]: ("TYPE_INT64", [1]),
        INPUTS[2]: ("TYPE_FP32", [spec.n_global_features]),
        OUTPUTS[0]: ("TYPE_FP32", [n_classes]),
        OUTPUTS[1]: ("TYPE_FP32", [hidden]),
    }

    def tensor(n: str) -> str:
        dtype, shape = dims[n]
        return f'  {{ name: "{n}" data_type: {dtype} dims: [ {", ".join(map(str, shape))} ] }}'

    params = "\n".join(
        f"parameters {{ key: {_pbtxt_str(k)} value {{ string_value: {_pbtxt_str(v)} }} }}"
        for k, v in parameters.items()
    )
    inputs = ",\n".join(tensor(n) for n in INPUTS)
    outputs = ",\n".join(tensor(n) for n in OUTPUTS)
    return (
        f"name: {_pbtxt_str(name)}\n{head}\nmax_batch_size: {max_batch_size}\n"
        f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
        f"instance_group [ {{ kind: {kind} count: {instances} }} ]\n"
        f"{params}\n"
    )


def _load(model) -> tuple[Any, Path | None]:
    """``(LoadedModel, path)`` from a shipped model name, a model file, or a LoadedModel."""
    from coffea_hepfm.model.io import load_model

    if hasattr(model, "scoring_module"):
        return model, getattr(model, "path", None)
    return load_model(model), None


def _onnx_export(module, example: tuple, path: Path) -> None:
    import torch

    names_in, names_out = list(INPUTS), list(OUTPUTS)
    axes = {n: {0: "batch"} for n in names_in + names_out}
    with warnings.catch_warnings():
        # The legacy exporter's known notes, nothing else: its deprecation (dynamo=False is deliberate: it
        # traces the data-dependent un-padding), the constants 2*pi and pi traced as constants (they are),
        # and the advanced-indexing note (our indices are >= 0, which is what it warns about).
        warnings.filterwarnings(
            "ignore", r"You are using the legacy TorchScript-based ONNX export", DeprecationWarning
        )
        warnings.filterwarnings("ignore", r"The feature will be removed", DeprecationWarning, r"torch\.onnx")
        warnings.filterwarnings(
            "ignore", r"torch\.tensor results are registered as constants", torch.jit.TracerWarning
        )
        warnings.filterwarnings("ignore", r"Exporting aten::index operator of advanced indexing", UserWarning)
        torch.onnx.export(
            module, example, str(path), input_names=names_in, output_names=names_out,
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip


def export_model(
    model,
    repo: str | os.PathLike,
    name: str | None = None,
    version: int = 1,
    backend: str = "python",
    max_batch_size: int = DEFAULT_MAX_BATCH,
    instances: int = 1,
    threads: int = 0,
    compute_batch: int = 512,
    gpu: bool = False,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Export ``model`` into the Triton model repository ``repo``.

    Parameters
    ----------
    model
        A shipped model name (``coffea_hepfm.models.available()``), a ``.safetensors`` model file, or a
        ``LoadedModel``.
    repo : path-like
        Repository directory (created if missing).
    name : str, optional
        Model name on the server; default the model file's stem. Letters, digits, ``_.-`` only.
    version : int
        Version directory, >= 1.
    backend : {"python", "libtorch", "onnx"}
    max_batch_size : int
        Largest batch (events) per request; the client splits larger ones.
    instances, threads, gpu
        ``instance_group`` count, torch threads per instance (python backend; 0 = torch default),
        and ``KIND_GPU`` instead of ``KIND_CPU``.
    compute_batch : int
        The python backend runs a merged batch in slices of this many events (CPU caches favour a
        few hundred; 0 = the whole batch at once). Outputs change only by float rounding.
    overwrite : bool
        Replace an existing ``REPO/NAME/VERSION``; otherwise that is an error.
    verify : bool
        Reload the written file (``torch.jit.load`` or onnxruntime) and compare its outputs with the
        in-memory model on example events (tolerance :data:`VERIFY_ATOL`); :class:`ExportError` if
        they differ, and nothing is written.

    Returns
    -------
    Path
        ``REPO/NAME``.
    """
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"version must be an int >= 1, got {version!r}")
    if not 1 <= max_batch_size <= 1 << 20:
        raise ExportError(f"max_batch_size must be in [1, 2^20], got {max_batch_size}")
    loaded, _ = _load(model)
    spec = loaded.spec
    if name is None:
        name = Path(str(loaded.path)).name.removesuffix(".safetensors")
    if not _NAME_RE.match(name):
        raise ExportError(f"model name {name!r} may only contain letters, digits and '_.-'")
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"repository {repo} exists and is not a directory")
    target = repo / name / str(version)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")

    scoring = loaded.scoring_module()
    padded = PaddedScoringModule(scoring, spec.max_nodes).eval()
    # Serving never needs gradients; without this the TorchScript executor may specialise a first call
    # made outside inference mode into an autograd graph that then fails inside it.
    padded.requires_grad_(False)
    scripted = torch.jit.script(padded)
    hidden = int(loaded.module.backbone.hidden)
    class_names = list(loaded.class_names)
    params = {
        "hepfm_wire_format": WIRE_FORMAT,
        "hepfm_graph_spec": json.dumps(spec.to_dict(), sort_keys=True),
        "hepfm_graph_spec_name": spec.name,
        "hepfm_graph_spec_version": str(spec.version),
        "hepfm_class_names": json.dumps(class_names),
        "hepfm_hidden": str(hidden),
        "hepfm_model_sha256": str(getattr(loaded, "sha256", "") or ""),
        "hepfm_threads": str(int(threads)),
        "hepfm_compute_batch": str(int(compute_batch)),
    }
    config = model_config_text(
        name, backend, spec, len(class_names), hidden, max_batch_size, params,
        instances=instances, kind="KIND_GPU" if gpu else "KIND_CPU",
    )  # fmt: skip

    repo.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".hepfm-export-{name}-", dir=repo.absolute().parent))
    try:
        vdir = tmp / str(version)
        vdir.mkdir()
        if backend in ("python", "libtorch"):
            scripted.save(str(vdir / "model.pt"))
        if backend == "python":
            shutil.copyfile(Path(__file__).with_name("backend_model.py"), vdir / "model.py")
        if backend == "onnx":
            example = _example_inputs(spec, 8)
            onnx_module = PaddedScoringModule(scoring, spec.max_nodes, onnx_compatible=True).eval()
            _onnx_export(onnx_module, example, vdir / "model.onnx")
        if verify:
            _verify(padded, vdir, backend, spec)
        (tmp / "config.pbtxt").write_text(config)
        (repo / name).mkdir(exist_ok=True)
        if target.exists():
            old = tmp / "replaced"
            target.rename(old)
        vdir.rename(target)
        os.replace(tmp / "config.pbtxt", repo / name / "config.pbtxt")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return repo / name


def _example_inputs(spec, n_events: int):
    """Small valid padded inputs (used to trace the ONNX graph; counts span 0 .. max_nodes)."""
    import torch

    g = torch.Generator().manual_seed(0)
    counts = torch.linspace(0, spec.max_nodes, n_events).round().long().reshape(-1, 1)
    nodes = torch.rand(n_events, spec.max_nodes, spec.n_node_features, generator=g)
    mask = torch.arange(spec.max_nodes).unsqueeze(0) < counts
    nodes = nodes * mask.unsqueeze(2)
    u = torch.rand(n_events, spec.n_global_features, generator=g)
    return nodes, counts, u


def run_exported(path: str | os.PathLike, nodes, n_nodes, u) -> tuple:
    """Run an exported ``model.pt`` (``torch.jit.load``) or ``model.onnx`` (onnxruntime) on numpy
    inputs of the padded wire format; returns numpy ``(probs, embedding)``."""
    import numpy as np

    path = Path(path)
    feeds = (
        np.ascontiguousarray(nodes, dtype=np.float32),
        np.ascontiguousarray(np.asarray(n_nodes, dtype=np.int64).reshape(-1, 1)),
        np.ascontiguousarray(u, dtype=np.float32),
    )
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return tuple(session.run(list(OUTPUTS), dict(zip(INPUTS, feeds, strict=True))))
    import torch

    module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        out = module(*(torch.from_numpy(a) for a in feeds))
    return tuple(o.numpy() for o in out)


def _verify(padded, vdir: Path, backend: str, spec) -> None:
    import numpy as np
    import torch

    example = _example_inputs(spec, 16)
    with torch.inference_mode():
        want = [t.numpy() for t in padded(*example)]
    name = "model.onnx" if backend == "onnx" else "model.pt"
    got = run_exported(vdir / name, *(t.numpy() for t in example))
    for label, a, b in zip(OUTPUTS, want, got, strict=True):
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=VERIFY_ATOL):
            diff = float(np.abs(a - b).max()) if a.shape == b.shape else f"shape {b.shape} != {a.shape}"
            raise ExportError(f"exported {name} does not reproduce the model: {label} differs by {diff}")
