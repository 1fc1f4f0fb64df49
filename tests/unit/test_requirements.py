"""setup.cfg's install_requires says what works without fighting the user's installation: every requirement
has a floor, none a ceiling but for a release known to break us, and the PyTorch releases after the one CI
pins are accepted (a user's CUDA torch 2.15 must not be replaced by an older build, gigabytes, or refused).
CI's exact versions live in .ci/constraints.txt, which .ci/run passes to pip."""

import configparser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# A ceiling needs a release that breaks us: name -> why. None is known now.
KNOWN_BREAKS: dict[str, str] = {}


def install_requires() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [Requirement(line) for line in (line.split("#")[0].strip() for line in lines) if line]


def test_every_requirement_has_a_floor_and_a_ceiling_only_for_a_known_break():
    requirements = install_requires()
    assert {r.name for r in requirements} >= {"torch", "diffusers", "transformers", "pyzmq"}
    for requirement in requirements:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {">=", "~=", "=="}, f"{requirement} has no floor"
        if operators & {"<", "<=", "~=", "=="}:
            assert requirement.name in KNOWN_BREAKS, f"{requirement} has a ceiling without a known break"


def test_newer_pytorch_releases_satisfy_install_requires():
    (torch,) = [r for r in install_requires() if r.name == "torch"]
    for release in ("2.13.0", "2.15.0", "2.15.1", "2.16.0"):
        assert torch.specifier.contains(Version(release)), f"torch {release} is refused by {torch}"
    assert not torch.specifier.contains(Version("2.6.0"))  # compile_cache.py needs 2.7's torch.compiler API


def test_ci_pins_every_requirement_and_installs_with_the_constraints():
    pinned = {}
    for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pinned[requirement.name.lower().replace("_", "-")] = Version(spec.version)
    for requirement in install_requires():
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in .ci/constraints.txt"
        assert requirement.specifier.contains(pinned[name]), f"CI's {name}=={pinned[name]} is outside {requirement}"
    assert pinned["torch"] == Version("2.13.0")
    run = (REPO / ".ci" / "run").read_text()
    assert "-c .ci/constraints.txt" in run and "torch==2.13.0" in run
