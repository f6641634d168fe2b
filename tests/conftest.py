"""Shared fixtures: tiny scans written on the fly, the real tooth scan when present."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOTH = Path(__file__).resolve().parent / "data" / "tooth.h5"
SHARED_TOOTH = ROOT.parent / "shared" / "data" / "tooth.h5"


#: Markers whose tests must run, not skip ($TERAVOX_REQUIRE="nextflow,slurm,apptainer", as
#: .ci/run sets it): on a developer's machine a missing tool is a skip with its reason; in CI,
#: where .ci/run installed the tools, a skip would hide that the pipeline never ran.
REQUIRED = {m for m in os.environ.get("TERAVOX_REQUIRE", "").replace(",", " ").split() if m}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    report = outcome.get_result()
    required = REQUIRED & {m.name for m in item.iter_markers()}
    if report.skipped and required and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"skipped, but {', '.join(sorted(required))} is required here "
                           f"(TERAVOX_REQUIRE): {reason}")


def write_dxchange(path: Path, n_proj: int = 12, rows: int = 6, cols: int = 20, *, theta: bool = True,
                   flats: bool = True, darks: bool = True, dtype=np.uint16, seed: int = 0,
                   metadata: dict | None = None) -> Path:
    """A small DXchange file with known content: data = 100 + index, flats 1000, darks 100."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = (rng.uniform(200, 900, (n_proj, rows, cols))).astype(dtype)
        f["/exchange/data"] = data
        if flats:
            f["/exchange/data_white"] = np.full((3, rows, cols), 1000, dtype)
        if darks:
            f["/exchange/data_dark"] = np.full((2, rows, cols), 100, dtype)
        if theta:
            f["/exchange/theta"] = np.linspace(0, 180, n_proj, endpoint=False)
        for key, (value, unit) in (metadata or {}).items():
            f[key] = value
            if unit is not None:
                f[key].attrs["units"] = unit
    return path


@pytest.fixture
def tiny_scan(tmp_path: Path) -> Path:
    return write_dxchange(tmp_path / "tiny.h5")


@pytest.fixture
def tooth() -> Path:
    for p in (SHARED_TOOTH, TOOTH):
        if p.exists():
            return p
    pytest.skip("tooth.h5 not found (../shared/data/tooth.h5 exists only in the teravox workplace)")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
