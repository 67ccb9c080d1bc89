"""Stamps that make every output traceable to the code and commit that made it."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .paths import repo_root

_PACKAGES = ("numpy", "torch", "transformers", "peft", "scikit-learn", "google-genai", "matplotlib")


def git_commit() -> str:
    """The repository's HEAD commit, with ``-dirty`` when the tree has changes; ``unknown`` outside git."""
    try:
        root = repo_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    out = {"radioalign": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def stamp(profile: str | None = None, **extra: Any) -> dict[str, Any]:
    """A provenance record: commit, profile, package versions, UTC time, and any extras."""
    from .profiles import PROFILES

    record = {
        "commit": git_commit(),
        "profile": profile,
        "profile_note": PROFILES[profile].note if profile in PROFILES else "",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }
    record.update(extra)
    return record


def write_stamp(path: str | Path, profile: str | None = None, **extra: Any) -> Path:
    """Write ``stamp()`` as JSON beside an output: ``fig1.png`` -> ``fig1.png.stamp.json``."""
    path = Path(path)
    target = path if path.suffix == ".json" and path.name.endswith(".stamp.json") else path.with_name(path.name + ".stamp.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(stamp(profile, output=path.name, **extra), indent=2) + "\n")
    return target


def stamp_line(profile: str | None = None) -> str:
    """One line for text outputs (Markdown / LaTeX comments)."""
    s = stamp(profile)
    v = s["versions"]
    return (
        f"radioalign {v['radioalign']} commit {s['commit']} profile {profile} "
        f"torch {v['torch']} transformers {v['transformers']} at {s['created']}"
    )
