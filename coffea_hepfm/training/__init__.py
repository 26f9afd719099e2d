"""Pretraining, fine-tuning, evaluation and the learning-curve study of the coffea-hepfm foundation model.

Data flow: simulated NanoAOD -> :func:`~coffea_hepfm.training.dataset.build_dataset` (parquet per process,
made once) -> :func:`~coffea_hepfm.training.pretrain.pretrain` (multiclass | multilabel | contrastive)
-> :func:`~coffea_hepfm.training.finetune.finetune` on a downstream task (or from scratch) ->
:func:`~coffea_hepfm.training.evaluate.evaluate_model`, :func:`~coffea_hepfm.training.study.run_study`,
:mod:`~coffea_hepfm.training.cka`.

Command line: ``coffea-hepfm dataset | pretrain | finetune | evaluate | study | cka``.

Modules are imported on use (``from coffea_hepfm.training.finetune import finetune``): importing the
package does not import torch.
"""
