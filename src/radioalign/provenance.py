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


def _profile_fields(profile: Any) -> dict[str, Any]:
    """The run's configuration as stamp fields: a name string, or any object with
    ``to_dict()`` (the study's ``Profile``, overrides included) and ``name``/``note``."""
    if profile is None or isinstance(profile, str):
        return {"profile": profile}
    if not hasattr(profile, "to_dict"):
        raise TypeError(f"profile must be a name, None, or an object with to_dict(), not {type(profile).__name__}")
    settings = profile.to_dict()
    return {"profile": settings.get("name"), "profile_note": settings.get("note", ""), "profile_settings": settings}


def stamp(profile: Any = None, **extra: Any) -> dict[str, Any]:
    """A provenance record: commit, the run's configuration, package versions, UTC time,
    and any extras (e.g. ``notebook=`` for the notebook that made an output)."""
    record = {
        "commit": git_commit(),
        **_profile_fields(profile),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }
    record.update(extra)
    return record


def write_stamp(path: str | Path, profile: Any = None, **extra: Any) -> Path:
    """Write ``stamp()`` as JSON beside an output: ``fig1.png`` -> ``fig1.png.stamp.json``."""
    path = Path(path)
    target = path if path.suffix == ".json" and path.name.endswith(".stamp.json") else path.with_name(path.name + ".stamp.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(stamp(profile, output=path.name, **extra), indent=2) + "\n")
    return target


def stamp_line(profile: Any = None) -> str:
    """One line for text outputs (Markdown / LaTeX comments)."""
    s = stamp(profile)
    v = s["versions"]
    return (
        f"radioalign {v['radioalign']} commit {s['commit']} profile {s['profile']} "
        f"torch {v['torch']} transformers {v['transformers']} at {s['created']}"
    )
