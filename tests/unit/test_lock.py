"""The one lock (requirements.lock) covers every dependency pyproject.toml declares, within its
range, and every install of a deployable artefact takes its versions from it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements.lock"
# Requirement files of what is deployed: both Lambda layers and the subscriber image.
DEPLOYED = ["layers/shared/requirements.txt", "layers/model/sam/requirements.txt", "functions/subscriber/requirements.txt"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^ ;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1).split("[")[0])] = m.group(2)
    return pins


def test_every_declared_dependency_is_locked_within_its_range():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(d) for d in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    pins = _pins()
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in pins]
    outside = [f"{r} (locked {pins[canonicalize_name(r.name)]})" for r in declared
               if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)],
                                                                                 prereleases=True)]
    assert not missing and not outside, f"requirements.lock is stale, run `make lock`: {missing + outside}"


def test_deployed_artefacts_install_from_the_lock():
    pins = _pins()
    for name in DEPLOYED:
        path = REPO_ROOT / name
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
        lines = [ln for ln in lines if ln]
        constraint = [ln for ln in lines if ln.startswith("-c ")]
        assert len(constraint) == 1 and (path.parent / constraint[0][3:]).resolve() == LOCK, name
        for ln in lines:
            if not ln.startswith("-"):
                req = Requirement(ln)
                assert not req.specifier, f"{name}: {ln} pins a version of its own; the lock holds versions"
                assert canonicalize_name(req.name) in pins, f"{name}: {req.name} is not in requirements.lock"
