"""``tomocupy``: adapter to TomoCuPy (GPU), when it and a CUDA device are present.

TomoCuPy's reconstruction classes read their settings from its global command-line
configuration, so the stable interface is its command ``tomocupy recon`` on a
DXchange file.  The adapter writes the sinograms to a temporary DXchange file as
transmissions (``exp(−p)``, flat = 1, dark = 0, so TomoCuPy's own −log gives back our
line integrals), runs ``tomocupy recon`` on it and reads the slices back.

Conversions (docs/architecture.md → TomoCuPy):

* **Layout**: projections (angles, rows, columns) in the file; angles in degrees.
* **Centre**: ``--rotation-axis`` is a column position with pixel i centred at i (its
  filter shifts the row by ``center − n/2`` with sample j at j), as ours: passed as is.
* **Orientation**: TomoCuPy follows TomoPy's image axes; our slice is its slice flipped
  along the first image axis, as for :mod:`.tomopy_backend`.
* **Filters**: ramp → ``ramp``, shepp-logan → ``shepp``, cosine, hann, hamming and
  parzen by name; **algorithm**: teravox's ``fbp`` → ``fourierrec``, or TomoCuPy's own
  name (``fourierrec``, ``lprec``, ``linerec``).
* **Size**: TomoCuPy reconstructs ``columns × columns``; the adapter crops or pads it
  to ``n × n`` about the centre of the grid (the rotation axis).

Neither TomoCuPy nor a GPU exists on the development machines: these conversions come
from reading TomoCuPy's source, and ``tests/test_backend_gpu.py`` compares this backend
with ``fourier`` wherever TomoCuPy runs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from teravox.errors import StageError
from teravox.recon import filters
from teravox.recon.backends import base

FILTER_NAMES = {"ramp": "ramp", "shepp-logan": "shepp", "cosine": "cosine", "hann": "hann",
                "hamming": "hamming", "parzen": "parzen"}
_ALGORITHMS = {"fbp": "fourierrec", "gridrec": "fourierrec"}


def _fit(rec: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad (slices, m, m) to (slices, n, n) keeping the grid centre."""
    m = rec.shape[-1]
    if m == n:
        return rec
    out = np.zeros(rec.shape[:-2] + (n, n), dtype=np.float32)
    # Centre (m−1)/2 of the source lands on (n−1)/2 of the target when m − n is even;
    # an odd difference cannot be met by whole pixels and is left to the caller.
    lo = (m - n) // 2
    src = slice(max(lo, 0), max(lo, 0) + min(m, n))
    dst = slice(max(-lo, 0), max(-lo, 0) + min(m, n))
    out[..., dst, dst] = rec[..., src, src]
    return out


def reconstruct(sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
                filter_name: str = "ramp", threads: int = 0, eps: float = 1e-5,
                upsampfac: float = 1.25, algorithm: str = "fbp") -> np.ndarray:
    """TomoCuPy reconstruction with teravox's conventions (see the module docstring).

    theta radians, center = rotation-axis column; returns (slices, n, n) float32
    attenuation per pixel.  threads/eps/upsampfac are unused.
    """
    sinos, theta, center, n = base.check_inputs(sinos, theta, center, n)
    filters.check_filter(filter_name)
    if not TomocupyBackend.is_available():
        raise base.absent_error("tomocupy", TomocupyBackend.why_absent())
    import h5py

    algo = _ALGORITHMS.get(algorithm, algorithm)
    with tempfile.TemporaryDirectory(prefix="teravox-tomocupy-") as tmp:
        scan = Path(tmp) / "sinograms.h5"
        with h5py.File(scan, "w") as f:
            f["/exchange/data"] = np.exp(-sinos.transpose(1, 0, 2)).astype(np.float32)
            f["/exchange/data_white"] = np.ones((1,) + sinos.shape[::2], np.float32)
            f["/exchange/data_dark"] = np.zeros((1,) + sinos.shape[::2], np.float32)
            f["/exchange/theta"] = np.degrees(theta)
        out_dir = Path(tmp) / "rec"
        cmd = ["tomocupy", "recon", "--file-name", str(scan), "--rotation-axis", repr(center),
               "--rotation-axis-auto", "manual", "--reconstruction-type", "full",
               "--reconstruction-algorithm", algo, "--fbp-filter", FILTER_NAMES[filter_name],
               "--dtype", "float32", "--save-format", "h5", "--out-path-name", str(out_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = sorted(out_dir.rglob("*.h5")) if out_dir.exists() else []
        if done.returncode != 0 or not found:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise StageError(f"tomocupy recon failed (exit {done.returncode}): {' | '.join(tail)}")
        with h5py.File(found[0], "r") as f:
            rec = np.asarray(f["/exchange/data"], dtype=np.float32)
    return np.ascontiguousarray(_fit(rec, n)[:, ::-1, :])


class TomocupyBackend(base.BackendBase):
    """Adapter to TomoCuPy (NVIDIA GPU), used when it imports and a device is present."""

    name = "tomocupy"
    hardware = "NVIDIA GPU (TomoCuPy)"

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        try:
            import tomocupy  # noqa: F401
        except ImportError:
            return "TomoCuPy is not installed"
        if shutil.which("tomocupy") is None:
            return "the tomocupy command is not on PATH"
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy sees no CUDA device"
        except Exception as exc:  # noqa: BLE001 - no CuPy, no driver, no device: all "absent"
            return f"no CUDA device ({exc})"
        return ""

    def reconstruct(self, sinos: np.ndarray, theta: np.ndarray, center: float, **kw: Any) -> np.ndarray:
        return reconstruct(sinos, theta, center, **kw)
