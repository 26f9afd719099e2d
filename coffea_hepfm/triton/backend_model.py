"""Triton python-backend model for coffea-hepfm; ``export-triton`` copies this file as ``model.py``.

It runs inside the *server* environment (``coffea_hepfm.triton.env``: numpy<2, torch, no coffea-hepfm)
and only needs the TorchScript file ``model.pt`` next to it, which takes the padded wire format of
``coffea_hepfm.triton.padded``. Tensors move between Triton and torch through DLPack (no numpy copies:
``as_numpy`` does not work when the client side runs numpy 2).

Dynamic batching hands :meth:`TritonPythonModel.execute` several requests at once: their inputs are
concatenated into one forward pass and the outputs split back, so many small client requests cost one
model call. A request that fails gets its own error response; it never gets another request's rows.
"""

import json
import os
import sys

# The backend stub's embedded interpreter ignores PYTHONPATH (it runs isolated); the server environment
# passes its site-packages there, so add the entries to sys.path ourselves, ahead of the base install.
for _entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)

import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from torch.utils.dlpack import from_dlpack, to_dlpack  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        # Requests are merged up to max_batch_size (few round trips), but the network runs fastest on
        # CPU in cache-sized slices: run the merged batch in slices of this many events.
        self.compute_batch = int(params.get("hepfm_compute_batch") or 0)
        threads = int(params.get("hepfm_threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def _inputs(self, request):
        out = []
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name}")
            out.append(from_dlpack(tensor.to_dlpack()))
        return out

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, sizes, ok = [], [], []
        for k, request in enumerate(requests):
            try:
                tensors = self._inputs(request)
            except Exception as err:  # bad request: answer it alone, keep the others
                responses[k] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err)))
                continue
            batch.append(tensors)
            sizes.append(int(tensors[0].shape[0]))
            ok.append(k)
        if ok:
            try:
                with torch.inference_mode():
                    args = [torch.cat([t[i] for t in batch]).to(self.device) for i in range(len(self.inputs))]
                    results = self._forward(args)
                    parts = [r.float().cpu().contiguous().split(sizes) for r in results]
                for j, k in enumerate(ok):
                    tensors = [
                        pb_utils.Tensor.from_dlpack(name, to_dlpack(parts[i][j].contiguous()))
                        for i, name in enumerate(self.outputs)
                    ]
                    responses[k] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as err:
                for k in ok:
                    responses[k] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"coffea-hepfm model failed: {type(err).__name__}: {err}")
                    )
        return responses

    def _forward(self, args):
        n = int(args[0].shape[0])
        step = self.compute_batch if self.compute_batch > 0 else n
        if n <= step:
            return self.model(*args)
        outs = [self.model(*(a[i : i + step] for a in args)) for i in range(0, n, step)]
        return [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]

    def finalize(self):
        self.model = None
