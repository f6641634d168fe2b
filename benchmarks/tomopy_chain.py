"""The reference of ``benchmarks/end_to_end.py``: teravox's chain as a plain TomoPy script.

    python benchmarks/tomopy_chain.py SCAN.h5 OUT.h5 --energy KEV --distance M --pixel-size M
                                      [--ncore 2] [--chunk-rows R] [--delta-beta 1000]
                                      [--outlier-dif 0.1] [--stripe-size 21]

h5py → ``normalize`` → ``remove_outlier`` → ``retrieve_phase`` → ``minus_log`` →
``remove_stripe_based_sorting`` → ``find_center_vo`` → ``recon`` (gridrec, ramlak) →
``remove_ring`` → ``circ_mask`` → uint16, on ``--ncore`` cores, as a beamline user would
write it: the scan in memory (or in blocks of ``--chunk-rows`` detector rows, with overlap
rows for the Paganin kernel, when it does not fit), TomoPy's defaults where teravox has no
equivalent parameter.  The parameters match teravox's defaults: outliers replaced beyond
0.1 of the median (3 × 3), Paganin with TomoPy's ``alpha = 1/(4π² δ/β)``
(``teravox.prep.paganin``), the sorting filter's window 21, the centre searched ±50 px
about the middle on the middle row, the uint16 range from the 0.1 and 99.9 percentiles of
three slices.  Writes ``/exchange/data`` (rows, y, x) as TomoPy orients it, with ``vmin``,
``vmax`` and ``center`` attributes, and prints one JSON line of timings per step.

Needs TomoPy, which is not on PyPI: build it from its source (CMake with FFTW) and put it
on ``PYTHONPATH``/``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np


class Clock:
    """Seconds per step, summed over blocks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, step: str, func, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN204
        t0 = time.perf_counter()
        out = func(*args, **kw)
        self.seconds[step] += time.perf_counter() - t0
        return out


def to_uint16(rec: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    q = (rec - np.float32(vmin)) * np.float32(65535 / (vmax - vmin))
    return np.clip(np.rint(q), 0, 65535).astype(np.uint16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--ncore", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=0, help="detector rows per block (default: all)")
    p.add_argument("--overlap", type=int, default=32, help="rows above and below a block for Paganin")
    p.add_argument("--delta-beta", type=float, default=1000.0)
    p.add_argument("--outlier-dif", type=float, default=0.1)
    p.add_argument("--stripe-size", type=int, default=21)
    p.add_argument("--energy", type=float, required=True, help="keV")
    p.add_argument("--distance", type=float, required=True, help="propagation distance, m")
    p.add_argument("--pixel-size", type=float, required=True, help="m")
    args = p.parse_args(argv)
    import tomopy

    clock, nc = Clock(), args.ncore
    with h5py.File(args.scan, "r") as f:
        data, n_rows = f["/exchange/data"], f["/exchange/data"].shape[1]
        theta = np.deg2rad(f["/exchange/theta"][()]).astype(np.float32)
        energy, distance, pixel = args.energy, args.distance, args.pixel_size
        alpha = 1.0 / (4 * math.pi**2 * args.delta_beta)
        step = args.chunk_rows or n_rows
        middle = n_rows // 2
        # the block holding the middle row first: it gives the centre and the uint16 range
        starts = sorted(range(0, n_rows, step), key=lambda s: not s <= middle < s + step)
        center = vmin = vmax = None
        out = h5py.File(args.out, "w")
        vol = None
        for s0 in starts:
            s1 = min(s0 + step, n_rows)
            lo, hi = max(0, s0 - args.overlap), min(n_rows, s1 + args.overlap)
            rows = np.s_[:, lo:hi, :]
            proj = clock("read", data.__getitem__, rows)
            flat = clock("read", f["/exchange/data_white"].__getitem__, rows)
            dark = clock("read", f["/exchange/data_dark"].__getitem__, rows)
            proj = clock("normalize", tomopy.normalize, proj, flat, dark, ncore=nc)
            proj = clock("remove_outlier", tomopy.remove_outlier, proj, args.outlier_dif, size=3, ncore=nc)
            proj = clock("retrieve_phase", tomopy.retrieve_phase, proj, pixel_size=pixel * 100,
                         dist=distance * 100, energy=energy, alpha=alpha, pad=True, ncore=nc)
            proj = clock("minus_log", tomopy.minus_log, proj, ncore=nc)
            proj = proj[:, s0 - lo: s0 - lo + (s1 - s0)]
            proj = clock("remove_stripe_based_sorting", tomopy.remove_stripe_based_sorting, proj,
                         size=args.stripe_size, ncore=nc)
            if center is None:
                center = float(clock("find_center_vo", tomopy.find_center_vo, proj, ind=middle - s0,
                                     ncore=nc))
            rec = clock("recon gridrec", tomopy.recon, proj, theta, center=center, algorithm="gridrec",
                        filter_name="ramlak", ncore=nc)
            del proj
            rec = clock("remove_ring", tomopy.remove_ring, rec, ncore=nc)
            rec = clock("circ_mask", tomopy.circ_mask, rec, axis=0, ratio=1.0)
            if vmin is None:
                sample = rec[[len(rec) // 4, len(rec) // 2, 3 * len(rec) // 4]]
                inside = tomopy.circ_mask(np.ones_like(sample), axis=0, ratio=1.0, val=0).astype(bool)
                vmin, vmax = (float(v) for v in np.percentile(sample[inside], [0.1, 99.9]))
            q = clock("uint16", to_uint16, rec, vmin, vmax)
            if vol is None:
                vol = out.create_dataset("/exchange/data", (n_rows,) + q.shape[1:], np.uint16)
            clock("write", vol.__setitem__, slice(s0, s1), q)
        vol.attrs.update(vmin=vmin, vmax=vmax, center=center)
        out.close()
    print(json.dumps({"center": center, "seconds": {k: round(v, 3) for k, v in clock.seconds.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
