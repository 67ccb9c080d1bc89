"""environment.yml (conda, Binder) and pyproject.toml must list the same dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements(lines):
    return {Requirement(line).name.lower().replace("_", "-"): str(Requirement(line).specifier) for line in lines}


def _pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return _requirements(lines)


def _environment():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _requirements([line for line in pip if not line.startswith("-")])


def test_environment_yml_matches_pyproject():
    py, env = _pyproject(), _environment()
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    differing = {name: (py[name], env[name]) for name in py if py[name] != env[name]}
    assert not differing, f"version specifiers differ (pyproject, environment.yml): {differing}"


def test_environment_yml_installs_the_package_and_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("python") for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip or "." in pip


def test_ci_runs_the_readme_test_command():
    readme_head = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make paper" in readme_head and "make test" in readme_head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
