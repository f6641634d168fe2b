"""Error and time of the automatic centre, with algotom's find_center_vo beside it.

For each width N a set of geometries: the default phantom (sized to stay in the field
of view) at 1.5·N angles over 180° (at most ``--max-angles``), its line integrals exact,
or with photon noise (``--flux`` photons at the brightest pixel), a few dead and
miscalibrated columns and zingers; the axis near the middle (inside algotom's default
window, N/2 ± N/16) and far from it (outside that window).  teravox's
:func:`teravox.recon.center.find_center` (the job's threads) and algotom's
``find_center_vo`` called directly with its defaults (one sinogram, its own window and
core count) run on the same sinogram in the same process; a 360° and a half-acquisition
geometry run for teravox alone (algotom's find_center_vo takes 180° sinograms).  Printed:
the error of each against the truth, the time of each, and the maximum and rms error of
each over the geometries.

    python benchmarks/center.py                      # 512, 2048, 8192 columns
    python benchmarks/center.py --sizes 512 2048 --max-angles 1024

``--wide N --wide-angles M --dir D`` instead times the collect stage's search
(:func:`teravox.stages.collect.search_center`) on an HDF5 file of M angles × 8 rows × N
columns (one exact row of transmissions, repeated by a virtual dataset), in a fresh
process, and prints its error, wall time, peak memory (VmHWM) and the collect memory
model's prediction; ``--memory`` does the same on random data at 1024–8192 columns
(the measurements the model's coefficients come from):

    python benchmarks/center.py --wide 24608 --wide-angles 24000 --dir /tmp/wide
    python benchmarks/center.py --memory --dir /tmp
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings

import numpy as np

from teravox import resources
from teravox.recon.center import find_center
from teravox.synth.phantom import default_phantom


def sinogram(n: int, center: float, theta: np.ndarray, *, half: bool = False) -> np.ndarray:
    """Exact line integrals (angles, columns) of the default phantom in the field of view."""
    reach = max(center, n - 1 - center) if half else min(center, n - 1 - center)
    ph = default_phantom(max(8, int(2 * reach + 1)), 8)
    return ph.line_integrals(theta, np.arange(n) - center, np.array([0.0]))[:, 0, :].astype(np.float32)


def defects(sino: np.ndarray, flux: float, seed: int) -> np.ndarray:
    """−log of Poisson counts, 0.5 % of the columns miscalibrated (±5 %), two dead columns,
    and zingers in 1e-4 of the pixels."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(flux * np.exp(-sino.astype(np.float64))).astype(np.float64)
    n = sino.shape[1]
    gain = np.ones(n)
    bad = rng.choice(n, max(2, n // 200), replace=False)
    gain[bad] = rng.uniform(0.95, 1.05, bad.size)
    gain[rng.choice(n, 2, replace=False)] = 0.01
    counts *= gain
    z = rng.random(counts.shape) < 1e-4
    counts[z] += 20 * flux
    return (-np.log(np.clip(counts, 1, None) / flux)).astype(np.float32)


def geometries(n: int, max_angles: int) -> list[dict]:
    m = min(int(1.5 * n), max_angles)
    t180 = np.linspace(0, np.pi, m, endpoint=False)
    t360 = np.linspace(0, 2 * np.pi, 2 * m, endpoint=False)
    mid = (n - 1) / 2
    return [
        {"name": "180 middle, exact", "center": mid + 0.03 * n + 0.37, "theta": t180},
        {"name": "180 middle, defects", "center": mid - 0.04 * n + 0.61, "theta": t180, "defects": True},
        {"name": "180 far, exact", "center": 0.22 * n + 0.29, "theta": t180},
        {"name": "180 far, defects", "center": 0.85 * n - 0.13, "theta": t180, "defects": True},
        {"name": "360 far, defects", "center": 0.3 * n + 0.41, "theta": t360, "defects": True},
        {"name": "half acq., defects", "center": 0.9 * n + 0.23, "theta": t360, "defects": True, "half": True},
    ]


def write_wide(path: str, n: int, m: int, center: float) -> None:
    """M angles × 8 rows × N columns of transmissions: one exact row, repeated (virtual dataset)."""
    import h5py

    theta = np.linspace(0, 180, m, endpoint=False)
    with h5py.File(path, "w") as f:
        src = f.create_dataset("/source", (m, 1, n), np.float32, chunks=(min(m, 64), 1, n))
        for a in range(0, m, 500):
            t = np.deg2rad(theta[a:a + 500])
            src[a:a + t.size, 0] = np.exp(-sinogram(n, center, t))
        layout = h5py.VirtualLayout((m, 8, n), np.float32)
        vsrc = h5py.VirtualSource(src)
        for r in range(8):
            layout[:, r, :] = vsrc[:, 0, :]
        f.create_virtual_dataset("/exchange/data", layout)
        f["/exchange/theta"] = theta


def measure(path: str, mode: str, center: float | None) -> None:
    """The collect stage's centre search on ``path``, in this (fresh) process: time, peak
    memory (VmHWM) against the collect memory model."""
    import h5py

    from teravox.config import Params
    from teravox.resources import peak_rss
    from teravox.stages import collect

    params = Params(center="auto", half_acquisition="auto" if mode == "half" else "off")
    with h5py.File(path, "r") as f:
        data = f["/exchange/data"]
        theta = f["/exchange/theta"][()]
        plan = {"theta_deg": theta.tolist()}
        t0 = time.perf_counter()
        found = collect.search_center(plan, params, data, "transmission")
        dt = time.perf_counter() - t0
        n_rows, n = data.shape[1:]
    predicted = collect.peak_bytes(params, np.deg2rad(theta), n_rows, n, True, n_out=n, cols_padded=n)
    truth = "" if center is None else f" (truth {center:.3f}, error {found.center - center:+.3f} px)"
    print(f"{mode:>4} {n:>6} {theta.size:>6}  centre {found.center:10.3f}{truth}, confidence "
          f"{found.confidence:.2f}, {dt:6.1f} s;  peak {peak_rss() / 2**20:6.0f} MiB, model "
          f"{predicted / 2**20:6.0f} MiB ({peak_rss() / predicted - 1:+.1%})", flush=True)


def memory_table(directory: str) -> None:
    """The search's peak memory against the model on random transmissions (fresh processes)."""
    import subprocess

    import h5py

    for n, m, mode in [(1024, 1000, "180"), (4096, 1000, "180"), (8192, 1000, "180"),
                       (4096, 2000, "360"), (4096, 2000, "half")]:
        path = os.path.join(directory, f"memory_{n}_{m}_{mode}.h5")
        if not os.path.exists(path):
            with h5py.File(path, "w") as f:
                f["/exchange/data"] = np.random.default_rng(0).uniform(0.5, 1, (m, 8, n)).astype(np.float32)
                f["/exchange/theta"] = np.linspace(0, 180 if mode == "180" else 360, m, endpoint=False)
        subprocess.run([sys.executable, __file__, "--measure", path, "--mode", mode], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wide", type=int, default=None, help="time the search on one wide scan of N columns")
    ap.add_argument("--wide-angles", type=int, default=24000)
    ap.add_argument("--dir", default="/tmp", help="where the wide scan is written")
    ap.add_argument("--memory", action="store_true", help="the search's peak memory against the model")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="180", help=argparse.SUPPRESS)
    ap.add_argument("--truth", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--max-angles", type=int, default=2048, help="at most this many angles over 180°")
    ap.add_argument("--flux", type=float, default=5000.0)
    ap.add_argument("--threads", type=int, default=0, help="teravox's threads (0: all cores)")
    ap.add_argument("--algotom-far", action=argparse.BooleanOptionalAction, default=True,
                    help="run algotom on the geometries outside its default window too (minutes each at 8192)")
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.mode, args.truth)
        return
    threads = resources.threads(args.threads)
    print(f"# python benchmarks/center.py {shlex.join(sys.argv[1:])}")
    if args.wide:
        import subprocess

        center = 0.47 * args.wide + 0.31
        path = os.path.join(args.dir, f"wide_{args.wide}x{args.wide_angles}.h5")
        os.makedirs(args.dir, exist_ok=True)
        if not os.path.exists(path):
            t0 = time.perf_counter()
            write_wide(path, args.wide, args.wide_angles, center)
            print(f"# wrote {path} in {time.perf_counter() - t0:.0f} s")
        print(f"# load average {os.getloadavg()[0]:.1f}")
        subprocess.run([sys.executable, __file__, "--measure", path, "--truth", str(center)], check=True)
        return
    if args.memory:
        print(f"# load average {os.getloadavg()[0]:.1f}")
        memory_table(args.dir)
        return
    print(f"# load average at start {os.getloadavg()[0]:.1f}; teravox threads {threads}; "
          f"algotom find_center_vo defaults (ncore = cores − 1)")
    from algotom.prep.calculation import find_center_vo

    print(f"{'N':>6} {'angles':>6}  {'geometry':<22} {'truth':>9}  {'teravox':>9} {'err':>7} {'s':>6} {'conf':>5}"
          f"  {'algotom':>9} {'err':>8} {'s':>7}")
    ours, theirs = {}, {}
    for n in args.sizes:
        for g in geometries(n, args.max_angles):
            sino = sinogram(n, g["center"], g["theta"], half=g.get("half", False))
            if g.get("defects"):
                sino = defects(sino, args.flux, seed=n)
            t0 = time.perf_counter()
            found = find_center(sino[None], g["theta"], half_acquisition="auto" if g.get("half") else "off",
                                threads=threads)
            t_ours = time.perf_counter() - t0
            err = found.center - g["center"]
            ours.setdefault(n, []).append(err)
            line = (f"{n:>6} {g['theta'].size:>6}  {g['name']:<22} {g['center']:>9.3f}  {found.center:>9.3f} "
                    f"{err:>+7.3f} {t_ours:>6.2f} {found.confidence:>5.2f}")
            if g["theta"][-1] < np.pi and (args.algotom_far or "middle" in g["name"]):  # 180° sinograms
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    c_alg = float(find_center_vo(sino))
                    t_alg = time.perf_counter() - t0
                theirs.setdefault(n, []).append(c_alg - g["center"])
                line += f"  {c_alg:>9.3f} {c_alg - g['center']:>+8.3f} {t_alg:>7.2f}"
            print(line, flush=True)
    print("\nsummary (error in px against the truth)")
    print(f"{'N':>6}  {'teravox max':>11} {'rms':>6}   {'algotom max':>11} {'rms':>7}")
    for n in args.sizes:
        a, b = np.abs(ours[n]), np.abs(theirs.get(n, [np.nan]))
        print(f"{n:>6}  {a.max():>11.3f} {np.sqrt(np.mean(a ** 2)):>6.3f}   {b.max():>11.3f} "
              f"{np.sqrt(np.mean(b ** 2)):>7.3f}")


if __name__ == "__main__":
    main()
