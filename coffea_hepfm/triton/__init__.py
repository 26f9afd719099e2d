"""Serving coffea-hepfm models on NVIDIA Triton, and the client of the ``"triton"`` score backend.

Modules (import them directly; this package imports nothing heavy):

- :mod:`~coffea_hepfm.triton.wire`: the padded wire format (numpy only);
- :mod:`~coffea_hepfm.triton.padded`: the served TorchScript module (un-pads, rebuilds edges, scores);
- :mod:`~coffea_hepfm.triton.repository`: ``export_model`` / ``coffea-hepfm export-triton``;
- :mod:`~coffea_hepfm.triton.env`: the separate server environment (``nvidia-pytriton``, numpy<2);
- :mod:`~coffea_hepfm.triton.server`: ``TritonServer`` / ``coffea-hepfm serve``;
- :mod:`~coffea_hepfm.triton.client`: ``TritonGraphClient`` (errors in :mod:`~coffea_hepfm.triton.errors`);
- :mod:`~coffea_hepfm.triton.bench`, :mod:`~coffea_hepfm.triton.dense`: ``coffea-hepfm bench triton``.

``backend_model.py`` is not imported here: ``export-triton`` copies it as the python backend's ``model.py``.
"""
