"""What a MiraBest-format archive holds: members, labels, image shape, versions and checksums.

Also the synthetic manifest's name and the byte-level helpers (md5, atomic write) that both
the loader (``mirabest``) and the synthetic maker (``synthetic``) use.

Both read this module and it reads neither, so the arrows run one way:
``synthetic -> archive``, ``mirabest -> archive``, ``mirabest -> synthetic`` (the loader
makes the default synthetic archive when asked for one that is missing).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pooch

# Fine-label codes in the order the pickles index them (``mirabest`` explains the code).
LABEL_NAMES = ("100", "102", "104", "110", "112", "200", "201", "210", "300", "310")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 8))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
MEMBERS = TRAIN_BATCHES + TEST_BATCHES + (META,)
IMAGE_SHAPE = (150, 150)

SYNTHETIC_MANIFEST = "MiraBest_synthetic_batches.json"


@dataclass(frozen=True)
class Version:
    """Where one MiraBest version comes from and what its files must hash to.

    ``member_md5`` maps each member of ``folder`` (``MEMBERS``) to its md5.
    ``names_from_filenames``: ``names`` are the filename stems stored in the batches
    (F, synthetic) rather than ``<version>-<split>-<index>`` ids (full).
    """

    name: str
    archive: str
    folder: str
    url: str | None
    archive_md5: str | None
    member_md5: dict[str, str] | None
    names_from_filenames: bool


VERSIONS: dict[str, Version] = {
    "full": Version(
        name="full",
        archive="MiraBest_full_batches.tar.gz",
        folder="batches",
        url="http://www.jb.man.ac.uk/research/MiraBest/full_dataset/MiraBest_full_batches.tar.gz",
        archive_md5="965b5daa83b9d8622bb407d718eecb51",
        member_md5={
            "data_batch_1": "b15ae155301f316fc0b51af16b3c540d",
            "data_batch_2": "0bf52cc1b47da591ed64127bab6df49e",
            "data_batch_3": "98908045de6695c7b586d0bd90d78893",
            "data_batch_4": "ec9b9b77dc019710faf1ad23f1a58a60",
            "data_batch_5": "5190632a50830e5ec30de2973cc6b2e1",
            "data_batch_6": "b7113d89ddd33dd179bf64cb578be78e",
            "data_batch_7": "626c866b7610bfd08ac94ca3a17d02a1",
            "test_batch": "5e443302dbdf3c2003d68ff9ac95f08c",
            "batches.meta": "e1b5450577209e583bc43fbf8e851965",
        },
        names_from_filenames=False,
    ),
    "F": Version(
        name="F",
        archive="MiraBest_F_batches.tar.gz",
        folder="F_batches",
        url="http://www.jb.man.ac.uk/research/MiraBest/MiraBest_F/MiraBest_F_batches.tar.gz",
        archive_md5="7d4e3a623d29db7204bce81676ee8ce2",
        member_md5={
            "data_batch_1": "f7a470b7367e8e0d0c5093d2cf266d54",
            "data_batch_2": "bb65ecd7e748e9fb789419b1efbf1bab",
            "data_batch_3": "32de1078e7cd47f5338c666a1b563ede",
            "data_batch_4": "a1209aceedd8806c88eab27ce45ee2c4",
            "data_batch_5": "1619cd7c54f5d71fcf4cfefea829728e",
            "data_batch_6": "636c2b84649286e19bcb0684fc9fbb01",
            "data_batch_7": "bc67bc37080dc4df880ffe9720d680a8",
            "test_batch": "ac7ea0d5ee8c7ab49f257c9964796953",
            "batches.meta": "e1b5450577209e583bc43fbf8e851965",
        },
        names_from_filenames=True,
    ),
    # Checksums live in SYNTHETIC_MANIFEST, written by make_synthetic_archive.
    "synthetic": Version(
        name="synthetic",
        archive="MiraBest_synthetic_batches.tar.gz",
        folder="synthetic_batches",
        url=None,
        archive_md5=None,
        member_md5=None,
        names_from_filenames=True,
    ),
}


def md5sum(path: str | os.PathLike) -> str:
    return pooch.file_hash(str(path), alg="md5")


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
