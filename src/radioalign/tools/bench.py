"""Throughput benchmark: ``python -m radioalign.tools.bench`` (``make bench``).

On the study's architecture (SigLIP 2 base: ViT-B/16 at 224 px, a 12-layer text tower
with the 256k Gemma vocabulary; random weights, nothing downloaded) it measures, in one
run on one machine:

- the machine's own matrix-multiply peak in float32 and in bfloat16 (the fastest square
  product, measured at the start and at the end of the run);
- image-embedding and caption-embedding throughput through ``embed_images`` /
  ``embed_texts`` with the default dtype (``"auto"``), as achieved GFLOP/s and as a
  fraction of those peaks, counting 35.4 GFLOP per 224 px image forward and 11 GFLOP
  per 64-token caption forward;
- one LoRA training step per scope (vision, text, full) on a batch of pairs;
- the time of one training epoch per scope (the authors' 620 training and 109 validation
  pairs, batches of 16) through ``train.train_one_epoch`` and ``train.evaluate_loss``, with
  the frozen tower recomputed at every step (cache off) and computed once per run (cache
  on, ``FinetuneConfig.cache_frozen_tower``); measured on a few batches and extrapolated
  to the epoch, with the one-off cost of the cache given apart;
- peak memory (the process's maximum resident set size; on CUDA the allocator's peak).

The target on a CPU is an image-embedding rate of at least half the measured bfloat16
matrix-multiply peak with the default dtype. ``--quick`` uses fewer and smaller batches;
``--epochs-only`` measures only the epoch times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..embed import autocast, embed_images, embed_texts, resolve_dtype
from ..model import apply_lora, default_device, random_base_siglip, text_max_length, tiny_processor
from ..train import (
    FinetuneConfig, Pairs, batch_loss, evaluate_loss, frozen_tower, make_optimizer, make_scaler, make_scheduler,
    resolve_mixed_precision, train_one_epoch, with_frozen_features,
)  # fmt: skip

EPOCH_TRAIN, EPOCH_VAL = 620, 109  # the authors' split of the 729 MiraBest training items
IMAGE_GFLOP = 35.4  # ViT-B/16 forward at 224 px, pooling head included
TEXT_GFLOP = 11.0  # SigLIP base text tower forward on 64 tokens


def base_architecture(device: torch.device, seed: int = 0):
    """SigLIP 2 base with random weights (``model.random_base_siglip``): values do not matter for speed."""
    return random_base_siglip(device, seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_rss_gib() -> float:
    """The process's maximum resident set size so far (GiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20  # bytes on macOS, KiB on Linux


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return peak_rss_gib()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, *, max_n: int | None = None, budget_s: float = 1.0) -> dict:
    """GFLOP/s of square ``n x n`` products in ``dtype``, from the fastest of repeated products
    (a peak: the best the machine did, robust to other load). ``n`` doubles from 256 while one
    product takes under a twentieth of the budget, so an emulated dtype stays small."""
    max_n = max_n or (8192 if device.type == "cuda" else 2048)
    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # warm-up: kernel selection, first touch
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if time.perf_counter() - start > budget_s / 20 or n >= max_n:
            break
        n *= 2
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 200):
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return {"n": n, "gflops": 2 * n**3 / min(times) / 1e9, "repeats": len(times)}


def bench_images(model, *, n: int, batch_size: int, dtype: str) -> dict:
    images = np.random.default_rng(0).integers(0, 256, (n, 150, 150), dtype=np.uint8)
    embed_images(model, images[: min(4, n)], batch_size=batch_size, dtype=dtype, progress=False)  # warm-up
    device = next(model.parameters()).device
    _sync(device)
    start = time.perf_counter()
    embed_images(model, images, batch_size=batch_size, dtype=dtype, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"items": n, "seconds": seconds, "per_s": n / seconds, "gflops": n * IMAGE_GFLOP / seconds}


def bench_texts(model, processor, *, n: int, batch_size: int, dtype: str) -> dict:
    words = "a bright compact core with two extended lobes and hotspots at the edges".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range(n)]
    embed_texts(model, processor, texts[: min(4, n)], batch_size=batch_size, dtype=dtype, progress=False)
    device = next(model.parameters()).device
    _sync(device)
    start = time.perf_counter()
    embed_texts(model, processor, texts, batch_size=batch_size, dtype=dtype, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"items": n, "seconds": seconds, "per_s": n / seconds, "gflops": n * TEXT_GFLOP / seconds}


def bench_train_step(model, scope: str, *, batch: int, steps: int, device: torch.device) -> tuple[dict, object]:
    """Time ``steps`` LoRA steps (forward, backward, AdamW) after one warm-up step, with the
    training loop's mixed precision; returns the figures and the model without adapters."""
    peft_model = apply_lora(model, scope=scope)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2.5e-5, weight_decay=0.01)
    precision = resolve_mixed_precision("auto", device)
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    size = model.config.vision_config.image_size
    pixels = torch.rand(batch, 3, size, size, device=device)
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(2, min(1000, vocab), (batch, text_max_length(model)), device=device)

    def step():
        with autocast(device, amp):
            loss = batch_loss(peft_model, pixels, ids)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 4.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    result = {"scope": scope, "batch": batch, "precision": precision, "seconds_per_step": seconds, "pairs_per_s": batch / seconds}
    return result, peft_model.unload()  # the base model without LoRA layers, for the next scope


def _timed(fn, device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def bench_epoch(model, scope: str, *, batch: int, batches: int, device: torch.device) -> tuple[dict, object]:
    """Seconds per training epoch of ``scope`` (``EPOCH_TRAIN`` training and ``EPOCH_VAL``
    validation pairs in batches of ``batch``) with the frozen tower's outputs recomputed at
    every step (``"off"``) and computed once (``"on"``; a full run has no frozen tower, so
    only ``"off"``). Each is ``train_one_epoch`` and ``evaluate_loss`` timed on ``batches``
    random batches after a one-batch warm-up, extrapolated by the number of batches (short
    last batches counted as full); ``cache_seconds`` is the one-off cost of the cache for
    all ``EPOCH_TRAIN + EPOCH_VAL`` items, paid once per run. Returns the figures and the
    model without adapters."""
    config = FinetuneConfig(scope=scope, batch_size=batch)
    peft_model = apply_lora(model, scope=scope, r=config.r, alpha=config.alpha, dropout=config.dropout)
    precision = resolve_mixed_precision("auto", device)
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    optimizer = make_optimizer(peft_model, config)
    scheduler, scaler = make_scheduler(optimizer, config, total_steps=10**6), make_scaler(precision)
    generator = torch.Generator().manual_seed(0)
    n, size = batch * batches, model.config.vision_config.image_size
    images = np.random.default_rng(0).integers(0, 256, (n, 150, 150), dtype=np.uint8)
    ids = torch.randint(2, min(1000, model.config.text_config.vocab_size), (n, text_max_length(model)))
    pairs = Pairs(images, ids, config.preprocessing, size, device)

    def epoch(data: Pairs) -> float:
        return train_one_epoch(peft_model, data, optimizer, scheduler, scaler, generator, config, amp)

    epoch(Pairs(images[:batch], ids[:batch], config.preprocessing, size, device))  # warm-up: both towers
    tower = frozen_tower(peft_model, scope)
    result: dict = {"scope": scope, "batch": batch, "batches_timed": batches, "precision": precision, "frozen_tower": tower}
    for cache in (False, True) if tower else (False,):
        data, cache_s = _timed(lambda: with_frozen_features(peft_model, pairs, tower if cache else None, batch, amp), device)
        _, train_s = _timed(lambda: epoch(data), device)
        _, val_s = _timed(lambda: evaluate_loss(peft_model, data, batch, amp), device)
        seconds = math.ceil(EPOCH_TRAIN / batch) * train_s / batches + math.ceil(EPOCH_VAL / batch) * val_s / batches
        result["on" if cache else "off"] = {
            "epoch_seconds": seconds,
            "cache_seconds": cache_s / n * (EPOCH_TRAIN + EPOCH_VAL) if cache else 0.0,
        }
    return result, peft_model.unload()


def _machine(device: torch.device) -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _throughput(report: dict, model, device: torch.device, *, quick: bool, dtype: str, batch_size: int):
    """Embedding rates and one training step per scope, into ``report``; returns the plain model."""
    compute = resolve_dtype(dtype, device)
    report["embedding_dtype"] = f"{dtype} -> {str(compute).removeprefix('torch.')}"
    gpu = device.type != "cpu"
    print(f"[bench] image embeddings ({report['embedding_dtype']}) ...", flush=True)
    _reset_peak(device)
    n_img = (64 if gpu else 8) if quick else (512 if gpu else 2 * batch_size)
    report["images"] = bench_images(model, n=n_img, batch_size=batch_size, dtype=dtype)
    report["images"]["peak_memory_gib"] = peak_memory_gib(device)

    print("[bench] caption embeddings ...", flush=True)
    _reset_peak(device)
    processor = tiny_processor()
    n_txt = (64 if gpu else 16) if quick else (1024 if gpu else 64)
    report["texts"] = bench_texts(model, processor, n=n_txt, batch_size=64, dtype=dtype)
    report["texts"]["peak_memory_gib"] = peak_memory_gib(device)

    report["train"] = []
    batch = 16 if (gpu or not quick) else 4
    for scope in ("vision", "text", "full"):
        print(f"[bench] LoRA training step, {scope} ...", flush=True)
        _reset_peak(device)
        result, model = bench_train_step(model, scope, batch=batch, steps=1 if not gpu else 5, device=device)
        result["peak_memory_gib"] = peak_memory_gib(device)
        report["train"].append(result)
    return model


def _epochs(model, device: torch.device, *, quick: bool) -> tuple[list[dict], object]:
    """``bench_epoch`` for each scope: the authors' batches of 16 (4 for a quick run on a CPU)."""
    gpu = device.type != "cpu"
    batch = 16 if (gpu or not quick) else 4
    batches = (2 if quick else 4) if gpu else 1
    results = []
    for scope in ("vision", "text", "full"):
        print(f"[bench] training epoch, {scope}, frozen tower cached and not ...", flush=True)
        result, model = bench_epoch(model, scope, batch=batch, batches=batches, device=device)
        results.append(result)
    return results, model


def _peaks_and_target(report: dict, device: torch.device, budget: float) -> None:
    # The peak again at the end, keeping the better of the two: other load on a shared
    # machine only ever lowers a measurement, and a low peak would flatter the fractions.
    print("[bench] matrix-multiply peaks again ...", flush=True)
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        again = matmul_peak(dt, device, budget_s=budget)
        if again["gflops"] > report["matmul"][name]["gflops"]:
            report["matmul"][name] = again
    peaks = {k: v["gflops"] for k, v in report["matmul"].items()}
    for kind in ("images", "texts"):
        report[kind]["fraction_of_peak"] = {k: report[kind]["gflops"] / v for k, v in peaks.items()}
    report["target"] = {
        "rule": "image embedding >= 50 % of the measured bfloat16 matmul peak, default dtype",
        "met": report["images"]["fraction_of_peak"]["bfloat16"] >= 0.5,
    }


def run(
    quick: bool = False, device: str | None = None, dtype: str = "auto", batch_size: int = 32, epochs_only: bool = False
) -> dict:
    """Every measurement of the module docstring (``epochs_only``: the epoch times alone) as a dict."""
    device = torch.device(device) if device else default_device()
    torch.manual_seed(0)
    report: dict = {"machine": _machine(device), "quick": quick, "epochs_only": epochs_only}
    budget = 0.5 if quick else 2.0
    if not epochs_only:
        print(f"[bench] matrix-multiply peaks on {device} ...", flush=True)
        report["matmul"] = {
            "float32": matmul_peak(torch.float32, device, budget_s=budget),
            "bfloat16": matmul_peak(torch.bfloat16, device, budget_s=budget),
        }
    model, report["build_seconds"] = _timed(lambda: base_architecture(device), device)
    report["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    if not epochs_only:
        model = _throughput(report, model, device, quick=quick, dtype=dtype, batch_size=batch_size)
    report["epochs"], model = _epochs(model, device, quick=quick)
    report["peak_rss_gib"] = peak_rss_gib()
    if not epochs_only:
        _peaks_and_target(report, device, budget)
    return report


def _precision(name: str) -> str:
    return "float32" if name == "no" else name


def render_epochs(results: list[dict]) -> list[str]:
    """The epoch-time table: per scope, cache off and on, the saving and the one-off cache cost."""
    first = results[0]
    lines = [
        f"training epoch ({EPOCH_TRAIN} train + {EPOCH_VAL} val pairs, batch {first['batch']}, "
        f"{_precision(first['precision'])};"
        f" extrapolated from {first['batches_timed']} timed batch(es) per scope)",
        f"  {'scope':<7}{'cache off':>11}{'cache on':>11}{'saving':>9}"
        f"   one-off cache ({EPOCH_TRAIN + EPOCH_VAL} items, once per run)",
    ]
    for r in results:
        off = r["off"]["epoch_seconds"]
        if "on" in r:
            on, cache = r["on"]["epoch_seconds"], r["on"]["cache_seconds"]
            saving = f"{1 - on / off:>9.0%}"
            lines.append(f"  {r['scope']:<7}{off:>9.1f} s{on:>9.1f} s{saving}   {cache:.1f} s ({r['frozen_tower']} tower)")
        else:
            lines.append(f"  {r['scope']:<7}{off:>9.1f} s{'n/a':>11}{'':>9}   none: both towers train")
    return lines


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"radioalign bench on {m['device']}: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"({m['torch_threads']} threads, {m['cpu_capability']}), load average {m['load_average']}",
        f"model: SigLIP 2 base architecture, {report['parameters_m']:.1f} M parameters, random weights "
        f"(built in {report['build_seconds']:.1f} s)"
        + (f"; embeddings in {report['embedding_dtype']}" if "embedding_dtype" in report else ""),
        "",
    ]
    if "matmul" in report:
        mm = report["matmul"]
        lines.append(
            f"matmul peak   float32 {mm['float32']['gflops']:9.1f} GFLOP/s (n={mm['float32']['n']})"
            f"   bfloat16 {mm['bfloat16']['gflops']:9.1f} GFLOP/s (n={mm['bfloat16']['n']})"
        )
    for kind, unit in (("images", "images"), ("texts", "captions")):
        if kind not in report:
            continue
        r = report[kind]
        f = r["fraction_of_peak"]
        lines.append(
            f"{kind:<7} {r['per_s']:9.2f} {unit}/s = {r['gflops']:8.1f} GFLOP/s = {f['float32']:6.1%} of float32 peak, "
            f"{f['bfloat16']:8.1%} of bfloat16 peak  ({r['items']} in {r['seconds']:.1f} s, peak {r['peak_memory_gib']:.2f} GiB)"
        )
    for r in report.get("train", []):
        lines.append(
            f"train {r['scope']:<6} {r['seconds_per_step']:7.2f} s/step (batch {r['batch']}, {_precision(r['precision'])}) "
            f"= {r['pairs_per_s']:6.2f} pairs/s, peak {r['peak_memory_gib']:.2f} GiB"
        )
    lines += render_epochs(report["epochs"])
    if "target" in report:
        t = report["target"]
        lines.append(f"target: {t['rule']}: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller batches (a few minutes on 2 CPU cores)")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: the best present)")
    parser.add_argument("--dtype", default="auto", help="embedding dtype (default auto)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--epochs-only", action="store_true", help="only the epoch times per scope, frozen tower cached and not")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    report = run(quick=args.quick, device=args.device, dtype=args.dtype, batch_size=args.batch_size, epochs_only=args.epochs_only)
    print(render(report))
    if args.json:
        from ..provenance import stamp

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "stamp": stamp()}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
