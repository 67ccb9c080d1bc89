"""Where the library keeps things: data, models, caches; environment overrides.

The study's results layout (``results/<profile>/...``) is in ``radioalign.study.layout``.

Every location can be moved with an environment variable so that an
air-gapped node can point at a prefetched copy:

``RADIOALIGN_HOME``         the repository root (default: found from this file)
``RADIOALIGN_DATA_DIR``     the MiraBest archive folder (default ``<home>/data/mirabest``)
``RADIOALIGN_CAPTIONS_DIR`` the published captions folder (default ``<home>/data/captions``)
``RADIOALIGN_MODELS_DIR``   local model folders (default ``<home>/data/models``)
``RADIOALIGN_RESULTS_DIR``  results root (default ``<home>/results``)
``RADIOALIGN_CACHE_DIR``    embedding cache (default ``<home>/.cache/radioalign``)
``RADIOALIGN_SHARED``       the project's shared reference folder (default ``<home>/../shared``)
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The repository root: ``$RADIOALIGN_HOME``, else the folder above ``src/``
    holding ``pyproject.toml``, else the current directory (an installed wheel)."""
    env = os.environ.get("RADIOALIGN_HOME")
    if env:
        return Path(env).expanduser().resolve()
    for parent in _PACKAGE_DIR.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "radioalign").is_dir():
            return parent
    return Path.cwd()


def _env_or(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    return _env_or("RADIOALIGN_DATA_DIR", repo_root() / "data" / "mirabest")


def captions_dir() -> Path:
    return _env_or("RADIOALIGN_CAPTIONS_DIR", repo_root() / "data" / "captions")


def models_dir() -> Path:
    return _env_or("RADIOALIGN_MODELS_DIR", repo_root() / "data" / "models")


def cache_dir() -> Path:
    return _env_or("RADIOALIGN_CACHE_DIR", repo_root() / ".cache" / "radioalign")


def shared_dir() -> Path | None:
    """The project's shared reference folder (real data for tests), or None."""
    path = _env_or("RADIOALIGN_SHARED", repo_root().parent / "shared")
    return path if path.is_dir() else None
