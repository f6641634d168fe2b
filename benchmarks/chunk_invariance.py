"""How much a volume depends on its chunking, with every chunk-free correction on.

    python benchmarks/chunk_invariance.py                      # the test's phase scan, ~1 min
    python benchmarks/chunk_invariance.py --angles 360 --rows 64 --cols 192

A Fresnel-propagated synthetic scan (drift, zingers, stripes) is reconstructed with I0 from
the beam monitor, outliers, air correction, Paganin, sorting stripe removal in pass 2, ring
removal and the circular mask, three ways: one chunk of each kind (the reference); the
chunkings the plan makes for 3 projection and 3 sinogram chunks (subchunks of 2 slices);
and 2 × 2 chunks with pass-1 row blocks of 4 rows forced (``proj_subchunk_rows``), where
Paganin sees only its overlap rows beyond each block.  Each is measured again without the
pass-2 stripe removal.  Printed: the largest difference from the reference over the
reference's range, its 99.9th percentile, and the voxels above 1e-4 of the range.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.io import open_scan
from teravox.runner.inprocess import run_plan
from teravox.synth.scan import write_scan

CORRECTIONS = dict(i0="monitor", outliers=True, outlier_dif=0.05, air=True, air_cols=4, paganin=True,
                   delta_beta=50.0, stripe_recon="sorting", stripe_sm_size=5, rings="fft", circ_mask=True)


def volume(scan: Path, work: Path, **params: object) -> tuple[np.ndarray, dict]:
    work.mkdir(parents=True)
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping(params), workdir=work)
    with h5py.File(run_plan(plan)["hdf5"]) as f:
        return f["/exchange/data"][()].astype(np.float64), plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--angles", type=int, default=90)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=48)
    args = ap.parse_args()
    print("# python benchmarks/chunk_invariance.py " + shlex.join(sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "phase.h5"
        write_scan(scan, n_angles=args.angles, n_rows=args.rows, n_cols=args.cols, drift=True, zingers=True,
                   stripes=True, propagation=True, energy_kev=20.0, distance_m=0.2, pixel_size_m=10e-6,
                   delta_beta=50.0, seed=3, progress=False)
        print(f"{'corrections':<24}{'chunking':<30}{'max/range':>11}{'99.9 %':>10}{'>1e-4':>8} of voxels  overlap")
        for label, extra in (("all", {}), ("all but pass-2 stripes", {"stripe_recon": "off"})):
            params = {**CORRECTIONS, **extra}
            ref, _ = volume(scan, Path(tmp) / f"ref{len(extra)}", proj_chunks=1, sino_chunks=1, threads=1,
                            **params)
            rng = ref.max() - ref.min()
            for name, chunking in (("3 × 3, planned subchunks", dict(proj_chunks=3, sino_chunks=3,
                                                                     sino_subchunk_rows=2, threads=1)),
                                   ("  the same, 2 threads", dict(proj_chunks=3, sino_chunks=3,
                                                                  sino_subchunk_rows=2, threads=2)),
                                   ("2 × 2, pass-1 rows of 4", dict(proj_chunks=2, sino_chunks=2,
                                                                    proj_subchunk_rows=4, threads=1))):
                vol, plan = volume(scan, Path(tmp) / f"{name.strip()[:5]}{len(extra)}", **chunking, **params)
                d = np.abs(vol - ref) / rng
                print(f"{label:<24}{name:<30}{d.max():>11.2e}{np.percentile(d, 99.9):>10.2e}"
                      f"{int((d > 1e-4).sum()):>8} of {d.size}  {plan['overlap_rows']} rows")


if __name__ == "__main__":
    main()
