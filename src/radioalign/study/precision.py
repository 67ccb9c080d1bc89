"""How much do bfloat16 features change the numbers? ``python -m radioalign.study.precision``

The authors computed their test features in float32; ``dtype="auto"`` would use bfloat16
wherever the hardware runs it natively. This measures the difference on the study's
architecture (SigLIP 2 base, random weights: the checkpoint cannot be fetched offline)
with real MiraBest_F images and their catalogue captions:

- per item, the cosine between the float32 and the bfloat16 embedding (images, captions);
- Table 1's metrics computed from float32 and from bfloat16 features, and their difference.

The result goes to ``paper/measurements/bf16_vs_fp32.json`` (stamped), which the deviation
registry (``radioalign.study.deviation_registry``) and the report read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..captions import catalog_caption
from ..data import load_mirabest
from ..embed import bf16_is_fast, embed_images, embed_texts
from ..metrics import class_recall_at_1, knn_f1, linear_probe_f1, mean_cosine, pair_cosines, recall_at_k
from ..model import random_base_siglip, tiny_processor
from ..paths import repo_root, shared_dir
from ..provenance import stamp

OUTPUT = "bf16_vs_fp32.json"


def _splits(archive: Path, train_limit: int | None, version: str = "F"):
    with tempfile.TemporaryDirectory() as tmp:
        for path in archive.parent.glob(archive.name.replace(".tar.gz", "") + "*"):  # the archive and any manifest
            shutil.copy2(path, tmp)
        train = load_mirabest("train", version=version, root=tmp, download=False)
        test = load_mirabest("test", version=version, root=tmp, download=False)
    if train_limit:
        # Every k-th item keeps both classes (the batches are ordered by label).
        step = max(1, len(train) // train_limit)
        train = train.subset(range(0, len(train), step)[:train_limit])
    return train, test


def _features(model, processor, train, test, captions, dtype: str) -> dict[str, np.ndarray]:
    out = {}
    for split, ds in (("train", train), ("test", test)):
        out[f"image_{split}"] = embed_images(model, ds.images, dtype=dtype, batch_size=16)
        out[f"text_{split}"] = embed_texts(model, processor, captions[split], dtype=dtype, batch_size=32)
    return out


def _metrics(f: dict, train, test) -> dict[str, float]:
    y_tr, y_te = train.labels, test.labels
    return {
        "linear_probe_f1_image": linear_probe_f1(f["image_train"], y_tr, f["image_test"], y_te),
        "linear_probe_f1_text": linear_probe_f1(f["text_train"], y_tr, f["text_test"], y_te),
        "knn_f1_image": knn_f1(f["image_train"], y_tr, f["image_test"], y_te),
        "knn_f1_text": knn_f1(f["text_train"], y_tr, f["text_test"], y_te),
        "mean_cosine": mean_cosine(f["image_test"], f["text_test"]),
        "recall@1": recall_at_k(f["image_test"], f["text_test"], k=1),
        "recall@5": recall_at_k(f["image_test"], f["text_test"], k=5),
        "class_recall@1": class_recall_at_1(f["image_test"], f["text_test"], y_te),
    }


def measure(archive: Path, *, train_limit: int | None = 240, version: str = "F", model=None, processor=None) -> dict:
    """Embed the splits in float32 and bfloat16 and compare (see the module docstring).
    ``model`` / ``processor`` default to the base architecture with random weights."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    if model is None:
        model, processor = random_base_siglip(device), tiny_processor()
    train, test = _splits(archive, train_limit, version)
    captions = {s: [catalog_caption(im) for im in ds.images] for s, ds in (("train", train), ("test", test))}
    fp32 = _features(model, processor, train, test, captions, "float32")
    bf16 = _features(model, processor, train, test, captions, "bfloat16")
    agreement = {k: pair_cosines(fp32[k], bf16[k]) for k in fp32}
    m32, m16 = _metrics(fp32, train, test), _metrics(bf16, train, test)
    result = {
        "n_train": len(train), "n_test": len(test), "bf16_native_here": bf16_is_fast(device),
        "embedding_cosine": {k: {"min": float(v.min()), "mean": float(v.mean())} for k, v in agreement.items()},
        "metrics_fp32": m32, "metrics_bf16": m16, "difference": {k: m16[k] - m32[k] for k in m32},
    }  # fmt: skip
    result["summary"] = summarise(result, version)
    return result


def summarise(result: dict, version: str = "F") -> str:
    """One sentence for the deviation registry: the worst embedding agreement and the
    largest change in any metric."""
    worst = min(v["min"] for v in result["embedding_cosine"].values())
    largest = max(result["difference"].items(), key=lambda kv: abs(kv[1]))
    return (
        f"bf16 vs fp32 on the base architecture (random weights), MiraBest_{version} ({result['n_train']} train, "
        f"{result['n_test']} test) with catalogue captions: embedding cosine >= {worst:.5f}; the largest metric "
        f"change is {largest[0]} {largest[1]:+.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.study.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=None, help="MiraBest_F_batches.tar.gz (default: ../shared)")
    parser.add_argument("--train-limit", type=int, default=240, help="training items used by the probes (0: all 729)")
    parser.add_argument("--output", type=Path, default=repo_root() / "paper" / "measurements" / OUTPUT)
    args = parser.parse_args(argv)
    archive = args.archive or ((shared_dir() or Path("/nonexistent")) / "data" / "mirabest" / "MiraBest_F_batches.tar.gz")
    if not archive.is_file():
        print(f"no MiraBest_F archive at {archive}: pass --archive", file=sys.stderr)
        return 2
    result = measure(archive, train_limit=args.train_limit or None)
    result["stamp"] = stamp(None, script="radioalign.study.precision", archive=archive.name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(result["summary"])
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
