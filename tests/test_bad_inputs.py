"""Bad inputs, each answered the way the README promises: exit status 2, exactly one line on
stderr naming the file, dataset or parameter and what was expected, no traceback, and no
output file left behind.  One case per defect of issue 15 and more found on the way.

Each case builds a damaged copy of one tiny synthetic scan (or gives a bad parameter) and
runs ``teravox run`` (or ``plan``/``info``/``demo``) in this process: a refusal happens
before any job starts, so the module stays fast.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from teravox.cli import main as teravox
from teravox.synth.scan import write_scan

N_ANGLES, N_ROWS, N_COLS = 24, 4, 16


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.h5"
    write_scan(path, n_angles=N_ANGLES, n_rows=N_ROWS, n_cols=N_COLS, noise=False, progress=False, seed=1)
    return path


@pytest.fixture(scope="module")
def good_nxtomo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good_nx.h5"
    write_scan(path, n_angles=N_ANGLES, n_rows=N_ROWS, n_cols=N_COLS, noise=False, progress=False, seed=1,
               format="nxtomo")
    return path


# -- damaged copies of the good scan ---------------------------------------------------------------
def replace(f: h5py.File, path: str, data: object, **attrs: object) -> None:
    del f[path]
    f[path] = data
    for key, value in attrs.items():
        f[path].attrs[key] = value


def edit(good: Path, dest: Path, change: Callable[[h5py.File], None]) -> Path:
    shutil.copy(good, dest)
    with h5py.File(dest, "a") as f:
        change(f)
    return dest


def theta(f: h5py.File) -> np.ndarray:
    return f["/exchange/theta"][()]


def vds_missing_source(good: Path, d: Path) -> Path:
    """Projections as a virtual dataset over two files, one of which is gone."""
    def change(f: h5py.File) -> None:
        data = f["/exchange/data"][()]
        del f["/exchange/data"]
        half = N_ANGLES // 2
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        for i in range(2):
            with h5py.File(d / f"part{i}.h5", "w") as g:
                g["frames"] = data[i * half:(i + 1) * half]
            layout[i * half:(i + 1) * half] = h5py.VirtualSource(f"part{i}.h5", "frames",
                                                                  shape=(half, N_ROWS, N_COLS))
        f.create_virtual_dataset("/exchange/data", layout, fillvalue=0)
    scan = edit(good, d / "vds.h5", change)
    (d / "part1.h5").unlink()
    return scan


def nx_angles(f: h5py.File, values: np.ndarray, units: str | None) -> None:
    for path in ("/entry/data/rotation_angle", "/entry/sample/rotation_angle"):
        del f[path]
    f["/entry/sample/rotation_angle"] = values
    if units is not None:
        f["/entry/sample/rotation_angle"].attrs["units"] = units
    f["/entry/data/rotation_angle"] = f["/entry/sample/rotation_angle"]


def corrupt_heap(good: Path, d: Path) -> Path:
    """The first local heap's signature overwritten: HDF5 cannot resolve the group's names."""
    raw = bytearray(good.read_bytes())
    at = raw.index(b"HEAP")
    raw[at:at + 4] = b"XXXX"
    (d / "corrupt.h5").write_bytes(bytes(raw))
    return d / "corrupt.h5"


def truncated(good: Path, d: Path) -> Path:
    raw = good.read_bytes()
    (d / "truncated.h5").write_bytes(raw[:len(raw) // 2])
    return d / "truncated.h5"


def broken_link_flats(good: Path, d: Path) -> Path:
    def change(f: h5py.File) -> None:
        del f["/exchange/data_white"]
        f["/exchange/data_white"] = h5py.ExternalLink("flats_elsewhere.h5", "/flats")
    return edit(good, d / "link.h5", change)


def yaml_bomb(d: Path) -> Path:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("exclude_proj: *i")
    (d / "bomb.yaml").write_text("\n".join(lines) + "\n")
    return d / "bomb.yaml"


# -- the cases -----------------------------------------------------------------------------------------
@dataclass
class Case:
    defect: str                      # the defect number, or "more" for cases found on the way
    scan: Callable[[Path, Path], Path] | None = None   # (good scan, folder) -> damaged copy
    args: list[str] = field(default_factory=list)      # further arguments
    expect: tuple[str, ...] = ()     # substrings of the error line (regular expressions)
    command: str = "run"
    nxtomo: bool = False


def dx(change: Callable[[h5py.File], None]) -> Callable[[Path, Path], Path]:
    return lambda good, d: edit(good, d / "bad.h5", change)


CASES: dict[str, Case] = {
    # 2: a wrong volume with exit 0 before
    "vds-missing-source": Case("2", vds_missing_source, expect=("vds.h5", r"\[/exchange/data\]", "part1.h5 is missing")),
    "bool-data": Case("2", dx(lambda f: replace(f, "/exchange/data", f["/exchange/data"][()] > 500)),
                      expect=(r"\[/exchange/data\]", "booleans", "integer or floating-point")),
    "flats-equal-darks": Case("2", dx(lambda f: replace(f, "/exchange/data_white", f["/exchange/data_dark"][()])),
                              expect=("data_white", "flats equal the darks", "expected flats brighter")),
    "darks-inf": Case("2", dx(lambda f: replace(f, "/exchange/data_dark",
                                                np.full(f["/exchange/data_dark"].shape, np.inf, np.float32))),
                      expect=("data_dark", "NaN or infinite", "expected flats brighter")),
    "radians-labelled-degrees": Case("2", dx(lambda f: replace(f, "/exchange/theta", np.deg2rad(theta(f)),
                                                               units="degrees")),
                                     expect=(r"\[/exchange/theta\]", "look like radians", "'degrees'")),
    "radians-without-units": Case("2", dx(lambda f: replace(f, "/exchange/theta", np.deg2rad(theta(f)))),
                                  expect=(r"\[/exchange/theta\]", "look like radians", "no units")),
    "identical-angles": Case("2", dx(lambda f: replace(f, "/exchange/theta", np.full(N_ANGLES, 30.0))),
                             expect=(r"\[/exchange/theta\]", "all 24 angles are 30°", "expected angles spread")),
    "center-10000": Case("2", args=["--center", "10000"], expect=("center: 10000", "outside the detector's columns 0..15")),
    "center-minus-500": Case("2", args=["--center", "-500"], expect=("center: -500", "outside the detector")),
    # 3: tracebacks before
    "string-angles": Case("3", dx(lambda f: replace(f, "/exchange/theta", np.array([b"%g" % t for t in theta(f)]))),
                          expect=(r"\[/exchange/theta\]", "stored as strings", "expected numbers")),
    "nxtomo-unknown-angle-unit": Case("3", lambda g, d: edit(g, d / "nx.h5", lambda f: nx_angles(
        f, f["/entry/sample/rotation_angle"][()], "gradians")), nxtomo=True,
        expect=("rotation_angle", "unknown angle unit 'gradians'", "known: ")),
    "corrupt-hdf5-metadata": Case("3", corrupt_heap, expect=("corrupt.h5", "HDF5 structure", "damaged")),
    "truncated-hdf5": Case("3", truncated, expect=("truncated.h5", "truncated file")),
    "target-job-gb-0": Case("3", args=["--target-job-gb", "0"], expect=("target_job_gb must be positive",)),
    "target-job-gb-nan": Case("3", args=["--target-job-gb", "nan"], expect=("target_job_gb", "finite number")),
    "delta-beta-nan": Case("3", args=["--paganin", "--delta-beta", "nan", "--distance-m", "0.1"],
                           expect=("delta_beta", "finite number")),
    "negative-energy-paganin": Case("3", args=["--paganin", "--energy-kev", "-20", "--distance-m", "0.1"],
                                    expect=("energy_kev must be positive",)),
    "negative-energy-in-file": Case("3", dx(lambda f: replace(f, "/measurement/instrument/monochromator/energy",
                                                              -20.0, units="keV")),
                                    args=["--paganin", "--distance-m", "0.1"],
                                    expect=("monochromator/energy", "energy_kev is -20", "positive")),
    "memory-400-digits": Case("3", args=["--memory", "9" * 400], expect=("memory:", "not a usable size", "e.g. 4G")),
    "out-is-a-file": Case("3", args=["OUT_IS_FILE"], expect=("--out", "is a file, expected a directory")),
    "demo-out-is-a-file": Case("3", command="demo", args=["OUT_IS_FILE"],
                               expect=("--out", "is a file, expected a directory")),
    "plan-output-in-a-file": Case("3", command="plan", args=["-o", "OUT_IS_FILE/plan.json"],
                                  expect=("a_file", "cannot create the output directory")),
    # 4: refused only inside a job (or not at all) before
    "complex-data": Case("4", dx(lambda f: replace(f, "/exchange/data", f["/exchange/data"][()].astype(np.complex64))),
                         expect=(r"\[/exchange/data\]", "complex numbers", "integer or floating-point")),
    "string-data": Case("4", dx(lambda f: replace(f, "/exchange/data", f["/exchange/data"][()].astype("S5"))),
                        expect=(r"\[/exchange/data\]", "strings", "integer or floating-point")),
    "compound-data": Case("4", dx(lambda f: replace(f, "/exchange/data", np.zeros(
        (N_ANGLES, N_ROWS, N_COLS), dtype=[("counts", "<u2"), ("time", "<f4")]))),
        expect=(r"\[/exchange/data\]", "compound", "integer or floating-point")),
    "nxtomo-nan-angles": Case("4", lambda g, d: edit(g, d / "nx.h5", lambda f: nx_angles(
        f, np.where(np.arange(f["/entry/sample/rotation_angle"].shape[0]) == 30, np.nan,
                    f["/entry/sample/rotation_angle"][()]), "degree")), nxtomo=True,
        expect=("rotation_angle", "1 of 24 angles are NaN or infinite")),
    "pad-width-negative": Case("4", args=["--pad-width-px", "-5"], expect=("pad_width_px must be at least 0",)),
    "stripe-sm-size-0": Case("4", args=["--stripe-recon", "sorting", "--stripe-sm-size", "0"],
                             expect=("stripe_sm_size must be at least 1",)),
    "ring-size-negative": Case("4", args=["--rings", "sinogram", "--ring-size", "-3"],
                               expect=("ring_size must be at least 1",)),
    "threads-negative": Case("4", args=["--threads", "-2"], expect=("threads must be at least 0",)),
    "jobs-negative": Case("4", args=["--jobs", "-1"], expect=("--jobs", "expected at least 1")),
    "pyramid-negative": Case("4", args=["--pyramid", "-1"], expect=("pyramid must be at least 0",)),
    "pyramid-50": Case("4", args=["--pyramid", "50"], expect=("pyramid: 50 levels", "allow at most 4")),
    # 5: a parameter file that expands to billions of values
    "yaml-billion-laughs": Case("5", args=["--params", "YAML_BOMB"], expect=("bomb.yaml", "expands to more than")),
    # more, found on the way
    "broken-external-link": Case("more", broken_link_flats,
                                 expect=("data_white", "external link to flats_elsewhere.h5", "file is missing")),
    "center-nan": Case("more", args=["--center", "nan"], expect=("center", "finite number")),
    "outlier-dif-nan": Case("more", args=["--outliers", "--outlier-dif", "nan"], expect=("outlier_dif", "finite number")),
    "percentiles-reversed": Case("more", args=["--dtype", "uint16", "--dtype-percentiles", "[90, 10]"],
                                 expect=("dtype_percentiles", "low < high")),
    "theta-calc-empty-range": Case("more", args=["--theta-source", "calc", "--theta-start-deg", "10",
                                                 "--theta-end-deg", "10"], expect=("all 24 angles are 10°",)),
    "i0-air-cols-reversed": Case("more", args=["--i0", "air", "--i0-air-cols", "[10, 5]"],
                                 expect=("i0_air_cols", "does not select anything in 0..16")),
    "memory-zero": Case("more", args=["--memory", "0"], expect=("memory", "not a usable size")),
    "fourier-eps-zero": Case("more", args=["--fourier-eps", "0"], expect=("fourier_eps must be positive",)),
    "fourier-eps-below-single-precision": Case("more", args=["--fourier-eps", "1e-9"],
                                               expect=("fourier_eps is a relative tolerance in", "got 1e-09")),
    "cpus-per-job-zero": Case("more", args=["--cpus-per-job", "0"], expect=("--cpus-per-job", "at least 1")),
    "image-key-float": Case("more", lambda g, d: edit(g, d / "nx.h5", lambda f: [replace(
        f, path, f["/entry/instrument/detector/image_key"][()].astype(float))
        for path in ("/entry/data/image_key", "/entry/instrument/detector/image_key")]),
        nxtomo=True, expect=("image_key", "floating point", "expected integers")),
    "nan-energy-in-file-paganin": Case("more", dx(lambda f: replace(
        f, "/measurement/instrument/monochromator/energy", np.nan, units="keV")),
        args=["--paganin", "--distance-m", "0.1"], expect=("energy_kev is nan", "positive")),
    "info-vds-missing-source": Case("more", vds_missing_source, command="info", expect=("part1.h5 is missing",)),
    "plan-flats-equal-darks": Case("more", dx(lambda f: replace(f, "/exchange/data_white",
                                                                f["/exchange/data_dark"][()])),
                                   command="plan", expect=("flats equal the darks",)),
}

OUTPUTS = ("*.h5", "*.pdf", "plan.json", "timings.json", "*.tmp-*", ".teravox.lock", "*.zarr", "*.tif*")


@pytest.mark.parametrize("name", list(CASES), ids=[f"{c.defect}:{n}" for n, c in CASES.items()])
def test_bad_input_is_one_line_exit_2(name, good, good_nxtomo, tmp_path, capsys):
    case = CASES[name]
    build = tmp_path / "in"
    build.mkdir()
    scan = case.scan(good_nxtomo if case.nxtomo else good, build) if case.scan else good
    out = tmp_path / "out"
    args = [str(a) for a in case.args]
    if any("OUT_IS_FILE" in a for a in args):
        out = tmp_path / "a_file"
        out.write_text("not a folder")
        args = [a.replace("OUT_IS_FILE", str(out)) for a in args if a != "OUT_IS_FILE"]
    if "YAML_BOMB" in args:
        args = [str(yaml_bomb(build)) if a == "YAML_BOMB" else a for a in args]
    argv = {"run": ["run", "--scan", str(scan), "--out", str(out), "--no-progress"],
            "demo": ["demo", "--out", str(out)],
            "plan": ["plan", str(scan), "-o", str(out / "plan.json"), "-q"],
            "info": ["info", str(scan)]}[case.command] + args
    capsys.readouterr()
    rc = teravox(argv)
    captured = capsys.readouterr()
    err = captured.err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"teravox {case.command}: error: "), lines[0]
    assert "Traceback" not in err
    assert lines[0].split(": error: ", 1)[1] not in captured.out  # printed once, on stderr
    for pattern in case.expect:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    if out.is_dir():
        left = [p.name for pattern in OUTPUTS for p in out.rglob(pattern)]
        assert not left, left


def test_bad_input_cases_cover_every_defect():
    """Every defect of issue 15 that is about refusing input has its cases here."""
    assert {c.defect for c in CASES.values()} >= {"2", "3", "4", "5"}


# -- read-only output and a full disk: a real small filesystem where this process may mount one -----
def _can_mount() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def run_on_small_fs(tmp_path: Path, size: str, teravox_args: list[str], ro: bool = False
                    ) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``teravox …`` with --out on a tmpfs of ``size`` (read-only with ``ro``) mounted in a mount
    namespace of its own (gone when the command ends); returns the result and the files left."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = " ".join(["'" + a.replace("OUT", str(mnt / "out")) + "'" for a in teravox_args])
    script = (f"mount -t tmpfs -o size={size}{',ro' if ro else ''} tmpfs {mnt} || exit 99; "
              f"{sys.executable} -m teravox.cli {cmd}; rc=$?; "
              f"echo '=== files'; find {mnt} -mindepth 1 -printf '%P\\n'; exit $rc")
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    files = res.stdout.split("=== files\n", 1)[-1].split()
    return res, files


def assert_one_line(res: subprocess.CompletedProcess, *patterns: str) -> None:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr + res.stdout
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])


@pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m) for a real small filesystem")
def test_full_disk_is_one_line_and_leaves_no_partial_file(good, tmp_path):
    """A real full disk (a 56 KiB tmpfs): one projection-chunk job writes its file, the other
    cannot.  Before, jobs died of a segmentation fault in HDF5's shutdown (exit -11) and the
    message carried HDF5's error dump."""
    res, files = run_on_small_fs(tmp_path, "56k", ["run", "--scan", str(good), "--out", "OUT", "--no-progress",
                                                   "--proj-chunks", "2", "--sino-chunks", "2"])
    assert_one_line(res, "no space left on .*/mnt/out", r"failed \(exit 2\)", "rerun the same command")
    assert "HDF5-DIAG" not in res.stderr + res.stdout and "errno = 28" not in res.stderr
    assert not [f for f in files if ".tmp-" in f or f.endswith(("timings.json", ".teravox.lock"))], files


@pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m) for a real small filesystem")
def test_read_only_output_folder(good, tmp_path):
    res, files = run_on_small_fs(tmp_path, "1m", ["run", "--scan", str(good), "--out", "OUT", "--no-progress"],
                                 ro=True)
    assert_one_line(res, "--out .*/mnt/out", "cannot be made", "Read-only file system", "writable directory")
    assert files == []


def test_full_disk_simulated(tmp_path, capsys, monkeypatch):
    """ENOSPC raised where an HDF5 write would raise it, for machines without a small filesystem:
    the same one line, and the temporary file is gone."""
    import errno

    from teravox.io.atomic import atomic_path, write_failed
    from teravox.stages._common import cli_entry

    monkeypatch.setattr("teravox.io.atomic._write_failed", False)  # restored when the test ends
    monkeypatch.setattr("teravox.io.atomic._kept", [])
    target = tmp_path / "proj_0000.h5"

    def body(_args: object) -> None:
        with atomic_path(target) as tmp, h5py.File(tmp, "w") as f:
            f["x"] = np.zeros(4)
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, error message = "
                                        "'No space left on device')")

    import argparse

    main = cli_entry(body, lambda: argparse.ArgumentParser(prog="teravox preprocess"))
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no space left on {tmp_path}" in err[0] and "proj_0000.h5 could not be written" in err[0]
    assert not list(tmp_path.iterdir()) and write_failed()
