"""LoRA fine-tuning of SigLIP with the sigmoid loss: a small, resumable training loop.

By default it follows the authors' protocol (REFERENCE §3), which ran the Hugging
Face ``Trainer`` with its defaults:

- loss: ``BCEWithLogits(logits_per_image, I)`` averaged over the N² image-text pairs
  of a batch (the SigLIP sigmoid loss divided by N), logit scale and bias frozen;
- AdamW (betas 0.9/0.999, eps 1e-8), lr 2.5e-5 decaying linearly to 0 over the
  planned optimiser steps (the Trainer's default schedule), weight decay 0.01;
- batches of 16, gradients accumulated over 2 batches, clipped to norm 4;
- fp16 autocast with a gradient scaler on CUDA (``mixed_precision="auto"``), float32 elsewhere;
- at most 50 epochs, early stopping when the validation loss has not improved for 5
  epochs, and the *last* model is kept (``restore_best=True`` keeps the best);
- validation: a random 15 % of the training items, seed 42, in the order of the
  authors' ``random_split`` subsets (``data.validation_split(..., sort=False)``); its loss
  from token ids without the attention mask, as their ``prediction_step`` computed it
  (training passes the mask the processor returns, as their ``model(**inputs)`` did).

In a single-tower run (``scope`` ``"vision"`` or ``"text"``) the other tower carries no
adapter and no dropout, so its outputs are the same at every step: they are computed
once per call (``cache_frozen_tower``) and the logits are formed from them exactly as
``SiglipModel.forward`` does. Losses and weights are those of the full forward, bit for
bit when every batch is full (a short last batch can round differently in float32, as
the matrix-multiply kernels depend on the batch size).

After every epoch a checkpoint (adapter weights, optimiser, scheduler, scaler, RNG
states, history, early-stopping state) replaces the previous one, so an interrupted
run continues from its last finished epoch and ends with the same weights as an
uninterrupted one; a checkpoint of a different run (data, model or settings) is
ignored. At the end the adapter is saved with peft's ``save_pretrained`` (``adapter/``,
loadable by plain ``PeftModel.from_pretrained``), beside ``history.json`` and
``config.json``.

Reading order: :func:`finetune` (``run``) calls the pieces in turn, one module per job:
``config`` (the settings and what they resolve to on a device), ``loss`` (the sigmoid loss),
``batches`` (the validation split and the pairs as the model takes them), ``loop`` (the
optimiser and the epochs), ``checkpoints`` (where a run stands, saving and resuming) and
``outputs`` (the embeddings, files and result a run leaves).
"""


from .batches import Pairs, Split, frozen_tower, make_pairs, run_pairs, split_pairs, train_attention_mask, with_frozen_features
from .checkpoints import CHECKPOINT, TrainState, load_checkpoint, run_key, save_checkpoint
from .config import FinetuneConfig, resolve_mixed_precision, steps_per_epoch
from .loop import (
    Optimisation, evaluate_loss, lora_model, make_optimisation, make_optimizer, make_scaler, make_scheduler, train_epochs,
    train_one_epoch,
)  # fmt: skip
from .loss import batch_loss, siglip_logits, sigmoid_loss
from .outputs import FinetuneResult, embed_stage, finish_run, run_record, saved_stages
from .run import finetune

__all__ = [
    "CHECKPOINT", "FinetuneConfig", "FinetuneResult", "Optimisation", "Pairs", "Split", "TrainState", "batch_loss",
    "embed_stage", "evaluate_loss", "finetune", "finish_run", "frozen_tower", "load_checkpoint", "lora_model",
    "make_optimisation", "make_optimizer", "make_pairs", "make_scaler", "make_scheduler", "resolve_mixed_precision",
    "run_key", "run_pairs", "run_record", "save_checkpoint", "saved_stages", "siglip_logits", "sigmoid_loss",
    "split_pairs", "steps_per_epoch", "train_attention_mask", "train_epochs", "train_one_epoch", "with_frozen_features",
]  # fmt: skip
