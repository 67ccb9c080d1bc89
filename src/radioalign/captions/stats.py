"""Caption statistics: how long the captions are, how rich their vocabulary, how much a 64-token text tower keeps.

Definitions
-----------
words
    Lower-cased runs of letters, digits, hyphens and apostrophes (``re``
    ``[a-z0-9]+(?:['-][a-z0-9]+)*``), so "edge-brightened" is one word.
``vocab_size``
    Number of distinct words over all captions.
``type_token_ratio``
    ``vocab_size / total words`` over the whole set (depends on the set size:
    compare sets of equal size).
token lengths
    With a tokenizer: the number of token ids the tokenizer gives each caption,
    special tokens included (what the text tower sees before truncation);
    ``share_truncated`` is the fraction of captions longer than ``max_tokens``
    (64 for SigLIP 2), i.e. cut off by ``padding="max_length", truncation=True``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


def words(caption: str) -> list[str]:
    """The caption's words (see the module docstring)."""
    return _WORD.findall(caption.lower())


def token_lengths(captions: Sequence[str], tokenizer) -> np.ndarray:
    """Token ids per caption (special tokens included, no truncation)."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor carries its tokenizer
    ids = tok(list(captions), add_special_tokens=True, truncation=False, padding=False)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


def caption_stats(captions: Sequence[str], tokenizer=None, max_tokens: int = 64) -> dict[str, Any]:
    """Summary statistics of a caption set.

    Returns ``n``, ``vocab_size``, ``words_total``, ``words_mean``, ``words_median``,
    ``words_min``, ``words_max``, ``type_token_ratio``; with ``tokenizer`` also
    ``tokens_mean``, ``tokens_median``, ``tokens_max``, ``token_lengths`` (list),
    ``max_tokens`` and ``share_truncated`` (fraction longer than ``max_tokens``).
    """
    captions = list(captions)
    if not captions:
        raise ValueError("caption_stats needs at least one caption")
    if not all(isinstance(c, str) for c in captions):
        raise TypeError("captions must be strings (a failed caption is None: drop it first)")
    per = [words(c) for c in captions]
    counts = np.array([len(w) for w in per])
    vocab = Counter(w for ws in per for w in ws)
    total = int(counts.sum())
    out: dict[str, Any] = {
        "n": len(captions),
        "vocab_size": len(vocab),
        "words_total": total,
        "words_mean": float(counts.mean()),
        "words_median": float(np.median(counts)),
        "words_min": int(counts.min()),
        "words_max": int(counts.max()),
        "type_token_ratio": len(vocab) / total if total else 0.0,
    }
    if tokenizer is not None:
        lengths = token_lengths(captions, tokenizer)
        out.update(
            tokens_mean=float(lengths.mean()),
            tokens_median=float(np.median(lengths)),
            tokens_max=int(lengths.max()),
            token_lengths=lengths.tolist(),
            max_tokens=int(max_tokens),
            share_truncated=float((lengths > max_tokens).mean()),
        )
    return out


def top_words(captions: Sequence[str], n: int = 20, stop: frozenset[str] | None = None) -> list[tuple[str, int]]:
    """The ``n`` most frequent words (minus an optional stop list)."""
    counts = Counter(w for c in captions for w in words(c) if not stop or w not in stop)
    return counts.most_common(n)


def load_tokenizer(model: str):
    """The text tokenizer of a ``radioalign.model`` model name (``"tiny"``, a hub id or a folder), or None.

    Offline without a local copy the statistics fall back to words; the reason is printed.
    """
    try:
        from transformers import AutoTokenizer

        from ..model import resolve_model_path

        return AutoTokenizer.from_pretrained(resolve_model_path(model))
    except Exception as err:  # offline, not downloaded, or radioalign.model unavailable
        print(f"tokenizer of {model!r} unavailable ({type(err).__name__}); caption lengths are counted in words")
        return None
