"""``teravox synth``: write a synthetic scan (DXchange or NXtomo) with a known ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from teravox.errors import ParamError
from teravox.stages._common import cli_entry
from teravox.synth.scan import SIZES, write_multiscan, write_scan

_EPILOG = """\
examples:
  teravox synth scan.h5                                 tiny scan (90 x 16 x 64), mild noise
  teravox synth scan.h5 --size medium --drift --zingers --stripes
  teravox synth scan.h5 --cols 2048 --rows 256 --angles 1800 --center 1030.3
  teravox synth ha.h5 --size small --half-acquisition --overlap 20
  teravox synth ph.h5 --phase --energy 20 --distance 0.1 --pixel-size 1e-6 --delta-beta 500
  teravox synth dm.h5 --layout danmax          (DanMAX metadata paths, no /exchange/theta)
  teravox synth nx.nxs --format nxtomo         (NeXus NXtomo with image_key)
  teravox synth stitch/ --scans 3 --overlap 32  (stitch/scan_00.h5 ... and stitch/scans.csv)
  teravox synth stack/ --heights 3 --rows 32 --overlap 10
                                     (a tall object in 3 height steps, stack/scans.csv with heights,
                                      and the whole height as one scan, stack/tall.h5)

The ground truth (phantom, centre, offsets, volume when small) is in the file's /truth group.
Sizes: """ + ", ".join(f"{k} = {a} angles x {r} rows x {c} columns" for k, (a, r, c) in SIZES.items())


def build_parser() -> argparse.ArgumentParser:
    """The ``teravox synth`` argument parser."""
    p = argparse.ArgumentParser(
        prog="teravox synth",
        description="Write a synthetic parallel-beam tomography scan of an analytic phantom "
                    "(exact line integrals), with optional detector and beam artefacts.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output file (a directory with --scans N > 1 or --heights N)")
    g = p.add_argument_group("size and geometry")
    g.add_argument("--size", choices=sorted(SIZES), help="named size (default tiny)")
    g.add_argument("--cols", type=int, help="detector columns (overrides --size)")
    g.add_argument("--rows", type=int, help="detector rows (overrides --size)")
    g.add_argument("--angles", type=int, help="number of projections (overrides --size)")
    g.add_argument("--center", type=float,
                   help="rotation axis column in pixels, 0-based (default (cols - 1)/2)")
    g.add_argument("--tilt", type=float, default=0.0, metavar="DEG",
                   help="tilt of the rotation axis in the detector plane, degrees (the centre moves to "
                        "larger columns at lower rows; --center is the axis at the middle row)")
    g.add_argument("--range", dest="theta_range", type=float, choices=(180.0, 360.0), metavar="{180,360}",
                   help="angular range in degrees (default 180, 360 with --half-acquisition)")
    g.add_argument("--half-acquisition", action="store_true",
                   help="360° scan with the axis near one edge; the object spans ~2 x cols")
    g.add_argument("--side", choices=("left", "right"), default="right",
                   help="edge the axis sits near with --half-acquisition (default right)")
    g.add_argument("--overlap", type=float,
                   help="pixels of overlap: across the axis (--half-acquisition), between scans (--scans) "
                        "or rows between height steps (--heights)")
    g.add_argument("--scans", type=int, default=1,
                   help="write N side-by-side scans of one wide object, for stitching")
    g.add_argument("--heights", type=int, default=1,
                   help="write N height steps of --rows rows of one tall object (a vertical stack), "
                        "and the whole height as one scan for reference")
    g.add_argument("--supersample", type=int, default=1,
                   help="sub-positions per pixel side to model pixel area integration (default 1)")
    d = p.add_argument_group("detector and artefacts")
    d.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True,
                   help="photon (Poisson) and read-out noise (default on)")
    d.add_argument("--flux", type=float, default=20000.0,
                   help="flat-field counts per pixel at the brightest pixel (default 20000)")
    d.add_argument("--drift", action="store_true", help="beam drift with top-up jumps (I0 is recorded)")
    d.add_argument("--zingers", action="store_true", help="isolated very bright pixels in some projections")
    d.add_argument("--stripes", action="store_true",
                   help="dead, hot and mis-calibrated columns in the projections (not the flats)")
    d.add_argument("--flats", type=int, default=10, help="flat fields before the scan (default 10)")
    d.add_argument("--darks", type=int, default=10, help="dark fields (default 10)")
    d.add_argument("--flats-after", action="store_true",
                   help="also flats after the scan (/exchange/data_white_post)")
    d.add_argument("--dtype", choices=("uint16", "float32"), default="uint16",
                   help="data type of the frames (default uint16)")
    ph = p.add_argument_group("phase contrast")
    ph.add_argument("--phase", action="store_true", help="Fresnel propagation of the exit wave")
    ph.add_argument("--energy", type=float, default=20.0, help="beam energy in keV (default 20)")
    ph.add_argument("--distance", type=float, help="propagation distance in metres (needed with --phase)")
    ph.add_argument("--pixel-size", type=float, default=1e-6, help="pixel size in metres (default 1e-6)")
    ph.add_argument("--delta-beta", type=float, help="delta/beta of every material (default 1000)")
    o = p.add_argument_group("output")
    o.add_argument("--layout", choices=("dxchange", "danmax"), default="dxchange",
                   help="metadata paths: DXchange /measurement/... or DanMAX /instrument/...")
    o.add_argument("--format", choices=("dxchange", "nxtomo"), default="dxchange",
                   help="file format (default dxchange)")
    o.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("-q", "--quiet", action="store_true", help="print nothing on success (no progress bar)")
    return p


def _run(args: argparse.Namespace) -> int:
    opts = dict(
        n_cols=args.cols, n_rows=args.rows, n_angles=args.angles, size=args.size,
        theta_range_deg=args.theta_range, supersample=args.supersample, dtype=args.dtype,
        flux=args.flux, n_flats=args.flats, n_darks=args.darks, flats_after=args.flats_after,
        noise=args.noise, drift=args.drift, zingers=args.zingers, stripes=args.stripes,
        propagation=args.phase, energy_kev=args.energy, distance_m=args.distance,
        pixel_size_m=args.pixel_size, delta_beta=args.delta_beta, layout=args.layout,
        format=args.format, seed=args.seed, progress=not (args.no_progress or args.quiet),
    )
    if args.scans < 1 or args.heights < 1:
        raise ParamError(f"--scans and --heights must be >= 1, got {args.scans}, {args.heights}")
    if args.heights > 1:
        from teravox.synth.stitch import write_zstack

        if args.scans > 1 or args.center is not None or args.half_acquisition:
            raise ParamError("--heights does not combine with --scans, --center or --half-acquisition")
        n_angles, n_rows, n_cols = SIZES[args.size or "tiny"]
        rows = args.rows or n_rows
        res = write_zstack(args.out, args.heights, rows_per_level=rows,
                           overlap_rows=int(args.overlap if args.overlap is not None else max(1, rows // 4)),
                           n_cols=args.cols or n_cols, n_angles=args.angles or n_angles,
                           supersample=args.supersample, noise=args.noise, seed=args.seed,
                           pixel_size_m=args.pixel_size, progress=not (args.no_progress or args.quiet))
        if not args.quiet:
            print(f"wrote {len(res['files'])} height steps to {args.out}/ (row 0 of each at "
                  f"{', '.join(f'{h:.2f}' for h in res['heights_px'])} of {res['total_rows']} rows) and the "
                  f"whole height as {res['talls'][0].name}; heights in {res['sheet']}")
        return 0
    if args.scans > 1:
        if args.center is not None or args.half_acquisition or args.tilt:
            raise ParamError("--scans does not combine with --center, --tilt or --half-acquisition")
        if args.overlap is None:
            raise ParamError("--scans N needs --overlap PX (pixels shared by neighbouring scans)")
        opts.pop("pixel_size_m")
        res = write_multiscan(args.out, args.scans, int(args.overlap),
                              pixel_size_m=args.pixel_size, **opts)
        if not args.quiet:
            print(f"wrote {len(res['files'])} scans to {args.out}/ (stitched width "
                  f"{res['wide_n_cols']} px, axis at {res['wide_center']:g}); positions in {res['csv']}")
        return 0
    truth = write_scan(args.out, center=args.center, tilt_deg=args.tilt, half_acquisition=args.half_acquisition,
                       side=args.side, overlap_px=args.overlap, **opts)
    if not args.quiet:
        size_mb = Path(truth["path"]).stat().st_size / 2**20
        print(f"wrote {truth['path']}: {truth['n_angles']} angles x {truth['n_rows']} rows x "
              f"{truth['n_cols']} columns ({size_mb:.1f} MiB), centre {truth['center']:g}, "
              f"{truth['theta_range_deg']:g}°; truth in /truth")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
