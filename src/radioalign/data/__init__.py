"""Radio-galaxy images: MiraBest (``mirabest``) and a synthetic set in its format (``synthetic``).

What such an archive holds, which both read, is in ``archive``.

Model-input preprocessing lives with the model (:func:`radioalign.model.preprocess`).
"""

from .archive import IMAGE_SHAPE, LABEL_NAMES, MEMBERS, SYNTHETIC_MANIFEST, TEST_BATCHES, TRAIN_BATCHES, VERSIONS, Version, md5sum
from .mirabest import (
    CLASS_NAMES,
    CONFIDENT,
    ArchiveError,
    ArchiveNotFoundError,
    ChecksumError,
    MiraBest,
    fetch_mirabest,
    images_by_name,
    load_mirabest,
    validation_split,
)
from .synthetic import make_synthetic_archive, synthetic_image

__all__ = [
    "CLASS_NAMES", "CONFIDENT", "IMAGE_SHAPE", "LABEL_NAMES", "MEMBERS", "SYNTHETIC_MANIFEST", "TEST_BATCHES", "TRAIN_BATCHES", "VERSIONS", "ArchiveError", "ArchiveNotFoundError",
    "ChecksumError", "MiraBest", "Version", "fetch_mirabest", "images_by_name", "load_mirabest", "md5sum",
    "validation_split", "make_synthetic_archive", "synthetic_image",
]  # fmt: skip
