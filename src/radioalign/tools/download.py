"""`make download`: prefetch everything a profile needs, for air-gapped compute nodes.

Run it on a login node with internet; then the compute node finds the MiraBest archive
in ``paths.data_dir()``, the published captions in ``paths.captions_dir()`` and the model
in ``paths.models_dir()/<name>`` (point the ``RADIOALIGN_*`` variables at a shared
filesystem if the two nodes see different home folders).
"""

from __future__ import annotations

from pathlib import Path

from ..model import TINY_MODEL
from ..paths import models_dir
from ..study.profiles import get_profile


def prefetch_model(name: str) -> Path | None:
    """Download a hub model into ``models_dir()/<last part of its name>`` (a plain folder)."""
    if name == TINY_MODEL or Path(name).expanduser().is_dir():
        return None
    from huggingface_hub import snapshot_download

    target = models_dir() / name.rstrip("/").split("/")[-1]
    snapshot_download(repo_id=name, local_dir=target)
    print(f"[radioalign] model {name} -> {target}")
    return target


def prefetch(profile: str) -> None:
    from ..captions import load_published_captions
    from ..data import load_mirabest

    P = get_profile(profile)
    for split in ("train", "test"):
        ds = load_mirabest(split=split, version=P.data_version, download=True)
        print(f"[radioalign] MiraBest {P.data_version} {split}: {len(ds)} images verified")
    if P.caption_source == "published":
        for prompt in P.prompts:
            for split in ("train", "test"):
                n = len(load_published_captions(prompt, split))
                print(f"[radioalign] published {prompt} {split}: {n} captions verified")
    prefetch_model(P.model)
