"""SigLIP loading, LoRA wrapping and the trainable fraction.

The study's checkpoint, ``google/siglip2-base-patch16-224``, is a fixed-resolution
SigLIP 2 model: it loads as transformers' :class:`~transformers.SiglipModel` (not
``Siglip2Model``, which serves the NaFlex checkpoints) with its processor (Gemma
tokenizer). A local folder works the same way, which is what air-gapped nodes use.

``"tiny"`` names a tiny random SigLIP (hidden size 32, 2 layers, 32 px images,
8 px patches) with a word-level tokenizer built locally from a small radio-astronomy
vocabulary: it is written once to ``paths.models_dir()/"tiny-siglip"`` and then
loaded through exactly the same code path as the real checkpoint, so the smoke
profile and the tests exercise the real loading, tokenisation and LoRA code.

Text conventions (SigLIP was trained this way, and the text tower pools the *last*
position, so a mistake here silently spoils text embeddings rather than failing):

- ``padding="max_length"`` to the text tower's length (64 for the base model),
  truncation, **right-side** padding;
- no attention mask is passed to the text tower.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .paths import models_dir

log = logging.getLogger(__name__)

BASE_MODEL = "google/siglip2-base-patch16-224"
TINY_MODEL = "tiny"  # built locally by build_tiny_siglip, no download


SCOPES = ("vision", "text", "full")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "fc1", "fc2")
TINY_FOLDER = "tiny-siglip"

# Module-name prefixes of the two towers inside SiglipModel. The vision tower's
# pooling head (``vision_model.head``, a multi-head attention pooling block) lies
# under its prefix, so its MLP ``fc1``/``fc2`` take LoRA in the vision scope, as in the
# authors' code (they wrapped ``model.vision_model`` with peft). Its attention is a
# fused ``nn.MultiheadAttention`` without q/k/v_proj submodules and stays frozen.
_TOWERS = {"vision": "vision_model", "text": "text_model", "full": "(?:vision_model|text_model)"}


class ModelNotAvailableError(FileNotFoundError):
    """The model is neither a local folder nor in the Hugging Face cache, and we are offline."""


def default_device() -> torch.device:
    """CUDA when present, else Apple MPS when present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter."""
    return next(model.parameters()).device


# ---------------------------------------------------------------------------
# Model input: grey images to pixel tensors

PREPROCESSING = ("paper", "siglip")


def preprocess(images, mode: str = "paper", size: int = 224):
    """Grey ``uint8`` images to model input: (N, H, W) -> float32 tensor (N, 3, size, size).

    Pixels are divided by 255, resized with bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``, no antialiasing) and the
    grey channel is replicated three times. ``paper``: values in [0, 1], as the authors fed
    the model (their torchvision ``Resize`` on a PIL image; for this 150 -> 224 upsampling
    the two agree to within one grey level, PIL rounding its result to uint8);
    ``siglip``: ``(x - 0.5) / 0.5`` in [-1, 1], SigLIP's own normalisation.

    Call it per batch: the result takes N * 3 * size**2 * 4 bytes.
    """
    import torch.nn.functional as F

    if mode not in PREPROCESSING:
        raise ValueError(f"mode must be one of {PREPROCESSING}, not {mode!r}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array (N, H, W) of uint8, not {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (0-255 grey levels, as loaded), not {images.dtype}")
    if images.ndim != 3:
        hint = " (a single image? use images[None])" if images.ndim == 2 else ""
        raise ValueError(f"images must have shape (N, H, W), not {images.shape}{hint}")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0).unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    # Bilinear weights are convex, so [0, 1] is kept up to rounding; clamp the rounding.
    x = x.clamp_(0.0, 1.0).repeat(1, 3, 1, 1)
    if mode == "siglip":
        x = x.sub_(0.5).div_(0.5)
    return x




# ---------------------------------------------------------------------------
# Loading


def resolve_model_path(name_or_path: str | os.PathLike = BASE_MODEL) -> str:
    """Where ``load_siglip`` reads a model from.

    ``"tiny"`` -> ``models_dir()/"tiny-siglip"`` (built on first use); an existing
    folder -> itself; a hub id whose last part names a folder in ``models_dir()``
    (``google/siglip2-base-patch16-224`` -> ``data/models/siglip2-base-patch16-224``,
    where ``make download`` puts it) -> that folder; anything else -> the hub id as is.
    """
    name = str(name_or_path)
    if name == TINY_MODEL:
        return str(build_tiny_siglip(models_dir() / TINY_FOLDER))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    local = models_dir() / name.rstrip("/").split("/")[-1]
    if (local / "config.json").is_file():
        return str(local)
    return name


def _not_available_message(name: str) -> str:
    folder = models_dir() / name.rstrip("/").split("/")[-1]
    return (
        f"model {name!r} is not available: it is not a local folder and not in the Hugging Face cache "
        f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}).\n"
        f"Download it on a machine with internet, e.g.\n"
        f"    huggingface-cli download {name} --local-dir {folder}\n"
        f"(or `hf download {name} --local-dir {folder}`, or `make download`), "
        f"and put the folder at {folder} (the models folder is paths.models_dir(), "
        f"movable with $RADIOALIGN_MODELS_DIR), or pass the folder itself to load_siglip."
    )


def load_siglip(
    name_or_path: str | os.PathLike = BASE_MODEL,
    device: str | torch.device | None = None,
    *,
    attn_implementation: str = "sdpa",
):
    """Load a SigLIP checkpoint as ``(SiglipModel, processor)`` in eval mode.

    Parameters
    ----------
    name_or_path
        A hub id (``google/siglip2-base-patch16-224``), a local folder, or ``"tiny"``
        (see :func:`resolve_model_path`).
    device
        Where to put the model; ``None`` picks CUDA, MPS or the CPU (:func:`default_device`).
    attn_implementation
        transformers' attention kernel; ``"sdpa"`` (PyTorch's fused attention) is fastest.

    Raises
    ------
    ModelNotAvailableError
        Offline without a cached copy; the message says what to download and where to put it.
    """
    from transformers import AutoProcessor, SiglipModel

    source = resolve_model_path(name_or_path)
    try:
        model = SiglipModel.from_pretrained(source, attn_implementation=attn_implementation)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as err:
        if Path(source).is_dir():
            raise
        raise ModelNotAvailableError(_not_available_message(str(name_or_path))) from err
    check_text_processing(model, processor)
    if source not in _REPORTED:  # once per checkpoint and process: what the authors' processor did
        _REPORTED.add(source)
        info = text_processing(processor)
        # a notice, not a problem: printed in notebooks (stderr, since stdout may carry a command's
        # JSON), hidden by the `radioalign` command below -v (it sets this logger's level)
        log.warning(
            f"[radioalign] {name_or_path}: {info['tokenizer']} pads on the {info['native_padding_side']} by itself "
            f"(radioalign pads on the right), {'returns' if info['returns_attention_mask'] else 'does not return'} "
            f"an attention mask, {'lower-cases' if info['lowercase'] else 'keeps case'}"
        )
    model.eval()
    model.to(torch.device(device) if device is not None else default_device())
    return model, processor


_REPORTED: set[str] = set()


def text_max_length(model) -> int:
    """The text tower's length: ``text_config.max_position_embeddings`` (64 for SigLIP 2 base)."""
    config = getattr(model, "config", model)
    return int(config.text_config.max_position_embeddings)


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def expects_lowercase(processor) -> bool:
    """Whether the tokenizer declares lower-cased input (``do_lower_case``, as SigLIP 1's does).

    The SigLIP 2 checkpoints ship a Gemma tokenizer that declares nothing and keeps
    case; the authors fed their captions as they were, so that is the default. SigLIP 2
    itself was pre-trained on lower-cased text: pass ``lowercase=True`` to
    :func:`tokenize` (and to ``embed_texts`` / ``finetune``) to follow that instead.
    """
    return bool(getattr(_tokenizer(processor), "do_lower_case", False))


PADDING_SIDES = ("right", "left")


def tokenize(
    processor,
    texts: Sequence[str],
    max_length: int,
    *,
    lowercase: bool | None = None,
    padding_side: str = "right",
    return_attention_mask: bool = False,
):
    """Token ids ``(N, max_length)`` padded to ``max_length`` and truncated, lower-cased when
    ``lowercase`` (``None``: :func:`expects_lowercase`).

    ``padding_side="right"`` is SigLIP's pre-training layout (the tower pools the last
    position, which is then padding). The attention mask is dropped unless
    ``return_attention_mask``, in which case ``(ids, mask)`` is returned: the authors'
    evaluation passed ids only, their training whatever the processor returned
    (:func:`text_processing`)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, not {padding_side!r}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; items {bad[:5]} are not (e.g. {texts[bad[0]]!r})")
    if lowercase is None:
        lowercase = expects_lowercase(processor)
    if lowercase:
        texts = [t.lower() for t in texts]
    tok = _tokenizer(processor)
    side, tok.padding_side = tok.padding_side, padding_side
    try:
        encoded = tok(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    finally:
        tok.padding_side = side
    if return_attention_mask:
        mask = encoded.get("attention_mask")
        if mask is None:
            mask = (encoded["input_ids"] != tok.pad_token_id).long()
        return encoded["input_ids"], mask
    return encoded["input_ids"]


def text_processing(processor) -> dict:
    """What the processor does to text on its own: its padding side before
    :func:`check_text_processing` set it, and whether it returns an attention mask (what
    the authors' training passed to the model). ``load_siglip`` prints this once."""
    tok = _tokenizer(processor)
    encoded = processor(text=["radio galaxy"], padding="max_length", max_length=8, truncation=True)
    return {
        "tokenizer": type(tok).__name__,
        "native_padding_side": getattr(tok, "_radioalign_native_padding_side", tok.padding_side),
        "returns_attention_mask": "attention_mask" in encoded,
        "lowercase": expects_lowercase(processor),
    }


def check_text_processing(model, processor) -> None:
    """Make the tokenizer pad on the right and check that a probe caption comes out as
    ``max_length`` ids with the padding at the end.

    Raises ``AssertionError`` when the tokenizer cannot produce SigLIP's layout.
    """
    tok = _tokenizer(processor)
    if not hasattr(tok, "_radioalign_native_padding_side"):
        tok._radioalign_native_padding_side = getattr(tok, "padding_side", "right")
    if getattr(tok, "padding_side", "right") != "right":
        # Gemma tokenizers default to left padding; SigLIP pools the last position,
        # which must be padding as in pre-training, so right padding is required.
        warnings.warn(f"tokenizer padding_side was {tok.padding_side!r}; set to 'right' as SigLIP requires", stacklevel=3)
        tok.padding_side = "right"
    length = text_max_length(model)
    assert tok.pad_token_id is not None, "the tokenizer has no pad token; SigLIP needs padding to max_length"
    ids = tokenize(processor, ["radio galaxy"], length)
    assert ids.shape == (1, length), f"tokenizer gave shape {tuple(ids.shape)}, expected (1, {length})"
    assert ids[0, -1].item() == tok.pad_token_id and ids[0, 0].item() != tok.pad_token_id, (
        "tokenizer does not pad on the right; SigLIP's text tower pools the last position"
    )


# ---------------------------------------------------------------------------
# The tiny model for tests and the smoke profile

# Words the catalogue captions and the Gemini captions use, so that the tiny
# tokenizer maps most of a caption to real ids. Numbers are split into digits.
_TINY_CORPUS = """
a an the of and or with without in on at to from by for is are this that image shows
radio galaxy source sources emission jet jets lobe lobes core cores hotspot hotspots
bright brighter brightest faint diffuse compact extended elongated bent symmetric asymmetric
fr-i fr-ii fri frii fanaroff riley class type hybrid double-double wide-angle tail head-tail
narrow-angle edge-brightened edge-darkened centre center central left right top bottom upper lower
north south east west flux centroid centroids peak peaks emission structure morphology
confident uncertain standard redshift z ra dec arcsec arcmin largest angular size las
two one three single multiple separate unrelated background point-like resolved unresolved
plume plumes bridge tails filament ring blob blobs knot knots stream streams shaped
between both dark diagonal end ends extends extending fades fainter fairly four gap horizontal vertical
lie lies lying long short midway moderately slightly strongly weakly near far no not only outer inner outward
inward running showing side sides sit sits small large stretched thin thick toward towards away them it its
unassociated associated appears visible seen along across around there these which has have its
""".split()


def _tiny_tokenizer():
    """The tiny model's tokenizer: word level over ``_TINY_CORPUS`` (lower-casing, digits
    split), ``<pad>``/``</s>``/``<unk>``, ``</s>`` appended, as a fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"], min_frequency=1)
    backend.train_from_iterator([" ".join(_TINY_CORPUS), "0 1 2 3 4 5 6 7 8 9 . , + - ( ) : ; % = /"], trainer=trainer)
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=64,
        padding_side="right",
    )


def _tiny_model(tokenizer, seed: int):
    """A random SigLIP, hidden size 32, 2 layers and 2 heads per tower, 32 px images in 8 px
    patches, text length 64; weights from ``seed`` without touching the global RNG."""
    from transformers import SiglipConfig, SiglipModel

    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = SiglipConfig(
        text_config=dict(
            tower,
            vocab_size=len(tokenizer),
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(tower, image_size=32, patch_size=8),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SiglipModel(config)


def _save_into_place(folder: Path, *savables) -> None:
    """``save_pretrained`` each of ``savables`` into a temporary folder, then rename it to
    ``folder``, so concurrent callers (parallel notebooks) never see a half-written model."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for savable in savables:
            savable.save_pretrained(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished first: keep its copy.
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_tiny_siglip(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a tiny random SigLIP and its processor to ``folder`` (once) and return it.

    Model: hidden size 32, 2 layers and 2 heads in each tower, 32 px images in 8 px
    patches, text length 64, random weights from ``seed``. Tokenizer: a word-level
    ``tokenizers`` model over a built-in radio-astronomy vocabulary (lower-casing,
    digits split), ``<pad>``/``</s>``/``<unk>``, an end-of-sequence token appended,
    wrapped as a fast tokenizer; processor: ``SiglipProcessor`` with a 32 px
    ``SiglipImageProcessor``. Built in a temporary folder and renamed into place, so
    concurrent callers (parallel notebooks) never see a half-written model.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    from transformers import SiglipImageProcessorPil, SiglipProcessor

    tokenizer = _tiny_tokenizer()
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    _save_into_place(folder, _tiny_model(tokenizer, seed), processor)
    return folder


# ---------------------------------------------------------------------------
# LoRA


def lora_target_regex(scope: str, targets: Sequence[str] = DEFAULT_TARGETS) -> str:
    """The peft ``target_modules`` regex (matched against full module names) for a scope:
    every module called one of ``targets`` inside the vision tower, the text tower, or both."""
    if scope not in _TOWERS:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    if isinstance(targets, str):
        targets = tuple(t.strip() for t in targets.split(","))
    if not targets:
        raise ValueError("targets must name at least one module")
    return rf"{_TOWERS[scope]}\..*\.(?:{'|'.join(re.escape(t) for t in targets)})"


def apply_lora(
    model,
    scope: str = "vision",
    r: int = 4,
    alpha: float = 16,
    dropout: float = 0.1,
    targets: Sequence[str] = DEFAULT_TARGETS,
):
    """Wrap a ``SiglipModel`` with LoRA adapters on one tower (``"vision"``, ``"text"``) or both (``"full"``).

    Every base weight is frozen, the logit scale and bias included; only the LoRA
    matrices (rank ``r``, scaling ``alpha / r``, dropout ``dropout``, no bias) train.
    The defaults are the authors' (REFERENCE §3: r=4, although the paper's text says 8).
    Returns a ``peft.PeftModel`` (the base model is modified in place).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise ValueError("the model already has adapters; apply_lora expects a plain SiglipModel")
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(scope, targets),
        bias="none",
    )
    with warnings.catch_warnings():
        # peft calls a transformers API that transformers 5 marks deprecated: not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def trainable_fraction(model: torch.nn.Module) -> float:
    """Percent of all parameters (adapters included) that require gradients."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    if total == 0:
        raise ValueError("the model has no parameters")
    return 100.0 * trainable / total


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Unnormalised image embeddings ``(N, D)``: the vision tower's pooled output.

    transformers >= 5 returns an output object from ``get_image_features``; older
    versions return the tensor. Both are handled."""
    out = base_model(model).get_image_features(pixel_values=pixel_values)
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Unnormalised text embeddings ``(N, D)`` from token ids; by default without an attention
    mask (SigLIP's text tower was trained without one and pools the last position)."""
    out = base_model(model).get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def base_model(model):
    """The ``SiglipModel`` under a peft wrapper (its LoRA layers stay in place), or the model itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def load_adapter(model, adapter_dir: str | os.PathLike):
    """Plain peft loading of an adapter saved by ``finetune`` onto a fresh ``SiglipModel``."""
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(model, str(adapter_dir))


def random_base_siglip(device: str | torch.device = "cpu", seed: int = 0):
    """SigLIP 2 base (ViT-B/16 at 224 px, 256k-token text tower) with random weights:
    normal(0, 0.02), unit LayerNorms, logit scale 10 and bias -10 (the checkpoint's
    initial values). Built without transformers' slow reference initialisation, so it takes
    seconds: for benchmarks and precision checks where the values do not matter."""
    from transformers import SiglipConfig, SiglipModel
    from transformers.initialization import no_init_weights

    config = SiglipConfig(text_config=dict(vocab_size=256000))
    config._attn_implementation = "sdpa"
    with no_init_weights():
        model = SiglipModel(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias") and p.ndim == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=generator)
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-10.0)
    return model.eval().to(device)


def tiny_processor():
    """A SigLIP processor built locally (no download), the tiny model's (:func:`build_tiny_siglip`,
    kept in the temporary folder): caption ids fall inside the base model's 256k vocabulary,
    and padding to 64 tokens makes the text cost independent of the words. For benchmarks
    and precision checks on :func:`random_base_siglip`."""
    from transformers import AutoProcessor

    folder = build_tiny_siglip(Path(tempfile.gettempdir()) / "radioalign-bench-tiny-siglip")
    return AutoProcessor.from_pretrained(folder)
