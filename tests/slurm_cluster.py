"""A real single-node SLURM for the tests: ``scripts/local-slurm.sh`` in a private directory.

Import the fixture where it is used (``from slurm_cluster import slurm  # noqa: F401``).
It is session-scoped: the daemons start once (a second or two), on free ports and with
their own munge socket, so they never touch a SLURM someone started by hand, and they
are stopped by process id when the session ends.  It skips, saying why, where it cannot
run: not root, the Debian packages or submitit missing, or the daemons failing (with the
tail of their logs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local-slurm.sh"
NEEDED = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol", "srun")


@dataclass(frozen=True)
class SlurmCluster:
    """Where the test cluster lives; ``SLURM_CONF`` points at ``conf`` while it runs."""

    dir: Path
    conf: Path
    port: int

    def run(self, *args: str) -> str:
        """A SLURM client command against this cluster; its stdout."""
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        return subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two adjacent free ports")


def why_not() -> str | None:
    """Why a local SLURM cannot be started here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (slurmd and munged run as root)"
    missing = [exe for exe in NEEDED if shutil.which(exe) is None]
    if missing:
        return (f"SLURM not installed ({', '.join(missing)} missing): "
                "run .ci/install-slurm.sh (apt-get install slurmctld slurmd slurm-client munge)")
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit not installed: pip install -e '.[slurm]'"
    return None


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node SLURM (partition ``debug``, node ``localhost``)."""
    reason = why_not()
    if reason:
        pytest.skip(f"local SLURM: {reason}")
    # Short path: the munge socket must fit in a unix socket name (108 bytes).
    d = Path(tempfile.mkdtemp(prefix="teravox-slurm-"))
    port = _free_port_pair()
    env = {**os.environ, "TERAVOX_SLURM_DIR": str(d), "TERAVOX_SLURM_PORT": str(port)}
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True,
                              env=env, timeout=120)
        ok, out = proc.returncode == 0, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        ok, out = False, f"timed out after {exc.timeout}s"
    if not ok:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, env=env, timeout=60)
        tail = "\n".join(out.strip().splitlines()[-40:])
        pytest.skip(f"local SLURM did not start:\n{tail}")
    cluster = SlurmCluster(d, d / "slurm.conf", port)
    with pytest.MonkeyPatch.context() as mp:
        # submitit and our executor call sbatch/squeue/scancel: they read SLURM_CONF.
        mp.setenv("SLURM_CONF", str(cluster.conf))
        try:
            yield cluster
        finally:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, env=env, timeout=120)
            shutil.rmtree(d, ignore_errors=True)
