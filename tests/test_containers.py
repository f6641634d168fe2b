"""The container definitions: what CI builds (containers/cpu.def) installs what teravox needs.

The image build itself (Apptainer from source, Debian's archive, PyPI) runs in CI through
``.ci/run``; the pipeline's run inside the image is tests/test_nextflow_run.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml (tomllib)")

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "containers" / "requirements-cpu.lock"


def locked() -> dict[str, str]:
    """name → exact version of containers/requirements-cpu.lock (every pin carries hashes)."""
    text = LOCK.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+) \\$", text, re.M))
    assert pins, "no pins in the lock file"
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.M)[1:]
    for block in blocks:
        assert "--hash=sha256:" in block, f"unhashed pin: {block.splitlines()[0]}"
    return {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}


def test_lock_pins_every_runtime_dependency_within_its_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = locked()
    for dep in map(Requirement, deps):
        name = re.sub(r"[-_.]+", "-", dep.name).lower()
        assert name in pins, f"{dep.name} is a dependency of teravox but not in {LOCK.name}"
        assert dep.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's {dep.specifier}")


def test_cpu_image_is_built_from_debian_and_the_lock():
    definition = (ROOT / "containers" / "cpu.def").read_text()
    assert re.search(r"^Bootstrap: debootstrap$", definition, re.M)
    assert "requirements-cpu.lock" in definition and "--require-hashes" in definition
    assert "pip check" in definition


@pytest.mark.parametrize("name", ["cuda.def", "cpu-tomopy.def"])
def test_conda_images_install_every_runtime_dependency(name):
    """The conda-forge images are not built in CI: at least they ask for every dependency."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    definition = (ROOT / "containers" / name).read_text().lower()
    for dep in map(Requirement, deps):
        conda = {"matplotlib": "matplotlib-base"}.get(dep.name.lower(), dep.name.lower())
        assert re.search(rf'"{re.escape(conda)}[<>=]', definition), f"{name} does not install {dep.name}"
