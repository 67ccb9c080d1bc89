"""The ``local`` backend: an open vision-language model through transformers.

``AutoModelForImageTextToText`` + ``AutoProcessor`` with the model's own chat
template; the same prompts as Gemini, as one user turn ``[instruction?, image,
query]``; greedy decoding; batched; on the GPU when there is one. The default,
SmolVLM-256M-Instruct, runs on a CPU.

Like Gemini's ``MAX_TOKENS``, an answer cut off at ``max_new_tokens`` is a
failure, not a caption (``accept_truncated=True`` keeps it), and so is an empty one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..paths import models_dir
from .prompts import get_prompt
from .store import CaptionStore, make_record

DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"


class LocalModelNotAvailableError(OSError):
    """The model is neither a local folder nor in the Hugging Face cache (offline)."""


def build_messages(prompt: str) -> list[dict]:
    """The chat messages for one image: instruction (if any), the image, the query."""
    spec = get_prompt(prompt)
    content = [{"type": "text", "text": spec.instruction}] if spec.instruction else []
    content += [{"type": "image"}, {"type": "text", "text": spec.query}]
    return [{"role": "user", "content": content}]


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """A local folder as is; a hub id whose last part is a folder in ``models_dir()`` -> that folder; else the id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    local = models_dir() / str(name_or_path).rstrip("/").split("/")[-1]
    return str(local) if (local / "config.json").is_file() else str(name_or_path)


def load_vlm(name_or_path: str | os.PathLike = DEFAULT_LOCAL_MODEL, device=None, dtype=None):
    """``(model, processor, device)`` in eval mode; bfloat16 on CUDA, float32 elsewhere unless ``dtype`` is given."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    source = resolve_model(name_or_path)
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    except OSError as err:
        folder = models_dir() / str(name_or_path).rstrip("/").split("/")[-1]
        raise LocalModelNotAvailableError(
            f"local captioning model {name_or_path!r} is not available offline ({err}). On a machine with "
            f"internet run `hf download {name_or_path} --local-dir {folder}` and copy the folder there "
            f"(or pass model=<folder>)."
        ) from err
    processor.tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
    model.to(device).eval()
    return model, processor, device


def _eos_ids(model, processor) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    for tok in ("<end_of_utterance>",):
        tid = processor.tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != processor.tokenizer.unk_token_id:
            ids.add(tid)
    return ids


def caption_local(
    items: list[tuple[str, np.ndarray]],
    prompt: str,
    store: CaptionStore,
    *,
    model: str = DEFAULT_LOCAL_MODEL,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    device=None,
    dtype=None,
    accept_truncated: bool = False,
    progress: bool = True,
) -> None:
    """Caption ``items`` with a local VLM, appending one record per image to ``store`` batch by batch."""
    import torch
    from PIL import Image

    vlm, processor, device = load_vlm(model, device=device, dtype=dtype)
    spec = get_prompt(prompt)
    text = processor.apply_chat_template(build_messages(prompt), add_generation_prompt=True)
    eos = _eos_ids(vlm, processor)
    version = getattr(vlm.config, "_commit_hash", None)
    bar = tqdm(total=len(items), desc=f"local {prompt}", disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = [[Image.fromarray(np.asarray(x, dtype=np.uint8), mode="L").convert("RGB")] for _, x in chunk]
        inputs = processor(text=[text] * len(chunk), images=images, return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            out = vlm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        records = []
        for k, ((id_, _), row) in enumerate(zip(chunk, new)):
            tokens = row.tolist()
            ends = [j for j, t in enumerate(tokens) if t in eos]
            stopped = bool(ends)
            n_generated = ends[0] + 1 if ends else len(tokens)
            caption = processor.decode(row, skip_special_tokens=True).strip()
            error = None
            if not stopped and not accept_truncated:
                error, caption = f"max_new_tokens ({max_new_tokens}) reached: truncated text discarded", None
            records.append(
                make_record(
                    id_, caption=caption, error=error, backend="local", model=str(model), prompt=prompt,
                    prompt_sha256=spec.sha256, model_version=version, finish_reason="stop" if stopped else "length",
                    usage={"prompt_tokens": int(inputs["attention_mask"][k].sum()), "generated_tokens": n_generated},
                    settings={"max_new_tokens": max_new_tokens, "do_sample": False, "dtype": str(vlm.dtype), "device": device.type},
                )
            )
        store.append(*records)
        bar.update(len(chunk))
    bar.close()
