"""Reading speed of each input layout against DXchange, and that reads stay lazy.

Writes one synthetic scan as DXchange, converts it to the other layouts
(``teravox.synth.layouts``), and times, per layout, what pass-1 jobs read: a block of
rows of every projection (row blocks) and a block of whole projections (full-height
blocks), best of 3, with the peak of the memory allocated while opening and reading
(tracemalloc: what the reader holds, about one block — the stack itself is never loaded).  DXchange, read in the same run, is the reference.

    python benchmarks/readers.py [--angles 720] [--rows 256] [--cols 512] [--block-rows 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from teravox.io import open_scan
from teravox.synth.layouts import write_diamond, write_esrf, write_tiff
from teravox.synth.scan import write_scan


def best(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--angles", type=int, default=720)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--cols", type=int, default=512)
    p.add_argument("--block-rows", type=int, default=16)
    p.add_argument("--block-proj", type=int, default=32)
    args = p.parse_args()
    print("#", " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), f"(load average {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ref = d / "ref.h5"
        write_scan(ref, n_angles=args.angles, n_rows=args.rows, n_cols=args.cols, noise=False, progress=False)
        t = write_tiff(ref, d / "tif")
        m = write_tiff(ref, d / "multi", multipage=True)
        layouts = {
            "DXchange (reference)": (ref, {}),
            "Diamond NeXus (ext. link)": (write_diamond(ref, d / "dls"), {}),
            "ESRF NXtomo (3 entries)": (write_esrf(ref, d / "esrf")["scan"], {}),
            "TIFF folder": (t["proj"], {"angles_file": str(t["angles"]), "angles_unit": "deg"}),
            "multi-page TIFF": (m["proj"], {"angles_file": str(m["angles"]), "angles_unit": "deg"}),
        }
        mib = args.angles * args.rows * args.cols * 2 / 2**20
        print(f"# scan {args.angles} × {args.rows} × {args.cols} uint16 = {mib:.0f} MiB; row block "
              f"{args.block_rows} rows × all projections, full-height block {args.block_proj} projections")
        print(f"{'layout':<28}{'open s':>8}{'rows s':>9}{'MiB/s':>8}{'proj s':>9}{'MiB/s':>8}{'peak MiB':>9}")
        ref_rows = None
        for name, (path, kw) in layouts.items():
            tracemalloc.start()
            t0 = time.perf_counter()
            with open_scan(path, **kw) as s:
                t_open = time.perf_counter() - t0
                order = np.argsort(s.theta_deg)
                rows = slice(args.rows // 2, args.rows // 2 + args.block_rows)
                got = s.read_projections(order, rows)
                if ref_rows is None:
                    ref_rows = got
                assert np.array_equal(got, ref_rows), name
                t_rows = best(lambda s=s, order=order, rows=rows: s.read_projections(order, rows))
                t_proj = best(lambda s=s, order=order: s.read_projections(order[:args.block_proj]))
            rows_mib = args.angles * args.block_rows * args.cols * 2 / 2**20
            proj_mib = args.block_proj * args.rows * args.cols * 2 / 2**20
            print(f"{name:<28}{t_open:>8.3f}{t_rows:>9.3f}{rows_mib / t_rows:>8.0f}{t_proj:>9.3f}"
                  f"{proj_mib / t_proj:>8.0f}{tracemalloc.get_traced_memory()[1] / 2**20:>9.1f}")
            tracemalloc.stop()


if __name__ == "__main__":
    main()
