"""environment.yml (conda, Binder) and pyproject.toml list the same dependencies, and CI
runs the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, which requires-python allows
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _requirements(lines):
    """name -> (version specifier, environment marker), names normalised."""
    parsed = [Requirement(line) for line in lines]
    return {r.name.lower().replace("_", "-"): (str(r.specifier), str(r.marker or "")) for r in parsed}


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
    assert not differing, f"specifiers or markers differ (pyproject, environment.yml): {differing}"


def test_environment_yml_installs_the_package_and_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("python") for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip or "." in pip


def test_pyproject_uses_a_licence_expression_and_names_the_repository():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str), "PEP 639: a licence expression, not a table"
    assert project["urls"]["Repository"].startswith("https://github.com/")


def _readme_commands() -> list[str]:
    """The commands of the README's first shell block, comments dropped."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README shows its commands in a ```bash block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def _run_ci(tmp_path: Path, fail_tests: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    """.ci/run in an empty checkout with `make` and `latexmk` faked: what it calls, in order."""
    (tmp_path / ".ci").mkdir(exist_ok=True)
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "make.log"
    log.write_text("")
    (fake / "make").write_text(
        "#!/bin/sh\n"
        f'echo "make $*" >> "{log}"\n'
        'case "$*" in pdf*) mkdir -p paper/build/smoke && echo pdf > paper/build/smoke/report.pdf ;; esac\n'
        f'[ "$1" != test ] || exit {1 if fail_tests else 0}\n'
    )
    (fake / "latexmk").write_text("#!/bin/sh\nexit 0\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done, log.read_text().splitlines()


def test_ci_runs_the_readme_test_command_first(tmp_path):
    commands = _readme_commands()
    test_command = next(c for c in commands if c.startswith("make test"))
    assert any(c.startswith("make paper") for c in commands)

    done, calls = _run_ci(tmp_path, fail_tests=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls[0] == test_command, f"CI's first command is {calls[:1]}, not the README's {test_command!r}"
    assert calls[1:] == ["make paper PROFILE=smoke", "make pdf PROFILE=smoke"], "then the smoke study and its report"

    done, calls = _run_ci(tmp_path, fail_tests=True)
    assert done.returncode != 0 and calls == [test_command], "failing tests fail CI, before anything else runs"
