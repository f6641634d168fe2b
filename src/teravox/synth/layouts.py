"""The same scan in the layouts other facilities write, made from a DXchange file.

Each writer copies the frames, angles and instrument values of a DXchange scan (such as
``write_scan`` makes) into another layout, so that a reader can be checked against the
DXchange original: same projections, flats, darks and angles, hence the same volume.

* :func:`write_diamond` — a NeXus master file whose NXdata group holds the frames as an
  HDF5 external link into a detector file, the rotation motor's recorded values as its
  ``axes`` (degrees, per frame), the image keys in the NXdetector, as Diamond's beamlines
  write it (HTTomo reads it with ``data_path``/``image_key_path``/angles paths).
* :func:`write_esrf` — nxtomomill's NXtomo: ``image_key_control`` beside ``image_key``
  (alignment frames −1 in the first, 0 in the second), ``x_pixel_size``/``distance`` in
  metres, the acquisition split over several entries (darks, flats, projections) or over
  several files.
* :func:`write_tiff` — TIFF stacks: folders of one-frame files (or multi-page files) of
  projections, flats and darks, and a text file of angles.

Everything is read whole: these are for small test scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


@dataclass
class _Scan:
    data: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    theta: np.ndarray       # degrees
    energy_kev: float
    pixel_size_m: float
    distance_m: float
    beam: np.ndarray


def _read(dxchange: Path) -> _Scan:
    with h5py.File(dxchange, "r") as f:
        m = "/measurement/instrument/"
        return _Scan(f["/exchange/data"][()], f["/exchange/data_white"][()], f["/exchange/data_dark"][()],
                     f["/exchange/theta"][()], float(f[m + "monochromator/energy"][()]),
                     float(f[m + "detector/pixel_size_x"][()]) * 1e-6,
                     float(f[m + "detector/distance"][()]) * 1e-3,
                     f[m + "beam_monitor/data"][()])


def _nx(group: h5py.Group, cls: str) -> h5py.Group:
    group.attrs["NX_class"] = cls
    return group


def _units(ds: h5py.Dataset, units: str) -> h5py.Dataset:
    ds.attrs["units"] = units
    return ds


def write_diamond(dxchange: str | Path, folder: str | Path, *, descending: bool = False,
                  motor: str = "smaract_zrot") -> Path:
    """Diamond-like NeXus: ``<folder>/12345.nxs`` with ``/entry/pco1_hw_hdf/data`` an external
    link to ``pco1-12345.h5`` [/entry/data/data] (darks, flats, projections), the motor's
    readings ``/entry/pco1_hw_hdf/<motor>_value`` (degrees, per frame; the NXdata ``axes``),
    the image keys at ``/entry/instrument/pco1_hw_hdf/image_key``.  ``descending``: the
    projections recorded from the last angle to the first.  Returns the master file."""
    s = _read(Path(dxchange))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    order = np.arange(s.data.shape[0])[::-1] if descending else np.arange(s.data.shape[0])
    frames = np.concatenate([s.darks, s.flats, s.data[order]])
    keys = np.concatenate([np.full(len(s.darks), 2), np.full(len(s.flats), 1), np.zeros(len(order))]).astype(np.uint8)
    # the motor stays where the scan starts while darks and flats are taken (sample moved out)
    motor_deg = np.concatenate([np.full(len(s.darks) + len(s.flats), s.theta[order[0]]), s.theta[order]])
    with h5py.File(folder / "pco1-12345.h5", "w") as d:
        d.create_dataset("/entry/data/data", data=frames, chunks=(1, *frames.shape[1:]))
    master = folder / "12345.nxs"
    with h5py.File(master, "w") as f:
        f.attrs["default"] = "entry"
        entry = _nx(f.create_group("entry"), "NXentry")
        entry.attrs["default"] = "pco1_hw_hdf"
        nxdata = _nx(entry.create_group("pco1_hw_hdf"), "NXdata")
        nxdata.attrs["signal"] = "data"
        nxdata.attrs["axes"] = [f"{motor}_value", ".", "."]
        nxdata.attrs[f"{motor}_value_indices"] = 0
        nxdata["data"] = h5py.ExternalLink("pco1-12345.h5", "/entry/data/data")
        _units(nxdata.create_dataset(f"{motor}_value", data=motor_deg), "deg")
        inst = _nx(entry.create_group("instrument"), "NXinstrument")
        det = _nx(inst.create_group("pco1_hw_hdf"), "NXdetector")
        det["image_key"] = keys
        det["data"] = h5py.ExternalLink("pco1-12345.h5", "/entry/data/data")
        _nx(inst.create_group("dcm"), "NXmonochromator")
        _units(inst.create_dataset("dcm/energy", data=s.energy_kev), "keV")
        # a scalar counter plotted against the motor: an NXdata group that is not the frames
        counter = _nx(entry.create_group("ionc1"), "NXdata")
        counter.attrs["signal"] = "diode"
        counter["diode"] = np.concatenate([np.ones(len(s.darks) + len(s.flats)), s.beam[order]])
        counter[f"{motor}_value"] = nxdata[f"{motor}_value"]
    return master


def _nxtomo_entry(f: h5py.File, name: str, frames: np.ndarray, control: np.ndarray, angles: np.ndarray,
                  s: _Scan, start_time: str) -> None:
    entry = _nx(f.create_group(name), "NXentry")
    entry["definition"] = "NXtomo"
    entry["start_time"] = start_time
    inst = _nx(entry.create_group("instrument"), "NXinstrument")
    det = _nx(inst.create_group("detector"), "NXdetector")
    det.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]))
    det["image_key_control"] = control.astype(np.int32)
    det["image_key"] = np.where(control == -1, 0, control).astype(np.int32)  # NXtomo has no alignment key
    _units(det.create_dataset("x_pixel_size", data=s.pixel_size_m), "m")
    _units(det.create_dataset("y_pixel_size", data=s.pixel_size_m), "m")
    _units(det.create_dataset("distance", data=s.distance_m), "m")
    _units(_nx(entry.create_group("beam"), "NXbeam").create_dataset("incident_energy", data=s.energy_kev), "keV")
    sample = _nx(entry.create_group("sample"), "NXsample")
    _units(sample.create_dataset("rotation_angle", data=angles), "degree")
    data = _nx(entry.create_group("data"), "NXdata")
    data.attrs["signal"] = "data"
    data["data"] = det["data"]
    data["image_key"] = det["image_key"]
    data["rotation_angle"] = sample["rotation_angle"]


def write_esrf(dxchange: str | Path, folder: str | Path, *, split: str = "entries") -> dict[str, Path]:
    """nxtomomill-like NXtomo of a DXchange scan, its projections followed by two alignment
    frames (``image_key_control`` −1).  ``split="entries"``: ``scan.nx`` with ``entry0000``
    (darks), ``entry0001`` (flats) and ``entry0002`` (projections); ``split="files"``: the
    projections in ``scan.nx``, the darks in ``darks.nx`` and the flats in ``flats.nx``.
    Returns the files by role ("scan", and "darks"/"flats" for files)."""
    s = _read(Path(dxchange))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(s.data)
    align = s.data[[n - 1, 0]] // 2 + 7          # not a projection of the scan: must never be used
    proj = np.concatenate([s.data, align])
    control = np.concatenate([np.zeros(n), [-1, -1]]).astype(int)
    angles = np.concatenate([s.theta, [s.theta[-1], s.theta[0]]])
    times = ["2024-05-01T10:00:00", "2024-05-01T10:01:00", "2024-05-01T10:02:00"]
    pieces = [("darks", s.darks, 2), ("flats", s.flats, 1)]
    out: dict[str, Path] = {"scan": folder / "scan.nx"}
    if split == "entries":
        with h5py.File(out["scan"], "w") as f:
            for i, (_, frames, key) in enumerate(pieces):
                _nxtomo_entry(f, f"entry{i:04d}", frames, np.full(len(frames), key),
                              np.full(len(frames), s.theta[0]), s, times[i])
            _nxtomo_entry(f, "entry0002", proj, control, angles, s, times[2])
    elif split == "files":
        for i, (role, frames, key) in enumerate(pieces):
            out[role] = folder / f"{role}.nx"
            with h5py.File(out[role], "w") as f:
                _nxtomo_entry(f, "entry0000", frames, np.full(len(frames), key),
                              np.full(len(frames), s.theta[0]), s, times[i])
        with h5py.File(out["scan"], "w") as f:
            _nxtomo_entry(f, "entry0000", proj, control, angles, s, times[2])
    else:
        raise ValueError(f"split must be 'entries' or 'files', got {split!r}")
    return out


def write_tiff(dxchange: str | Path, folder: str | Path, *, multipage: bool = False) -> dict[str, Path]:
    """TIFF stacks of a DXchange scan: ``proj/``, ``flats/``, ``darks/`` of one-frame files
    (``proj_00000.tif`` …), or ``proj.tif``, ``flats.tif``, ``darks.tif`` (``multipage``),
    and ``angles.txt`` (degrees, one per projection).  Returns the paths by role."""
    import tifffile

    s = _read(Path(dxchange))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for role, frames in (("proj", s.data), ("flats", s.flats), ("darks", s.darks)):
        if multipage:
            out[role] = folder / f"{role}.tif"
            tifffile.imwrite(out[role], frames)
        else:
            out[role] = folder / role
            out[role].mkdir(exist_ok=True)
            for i, frame in enumerate(frames):
                tifffile.imwrite(out[role] / f"{role}_{i:05d}.tif", frame)
    out["angles"] = folder / "angles.txt"
    np.savetxt(out["angles"], s.theta, fmt="%.17g", header="rotation angle per projection, degrees")
    return out
