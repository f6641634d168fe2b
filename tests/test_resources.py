"""What jobs learn about their resources, and the allocator setting the chunk jobs use."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from teravox.resources import gpu_devices

_FAULTS = """
import resource, sys
import numpy as np
from teravox.resources import reuse_freed_memory
if sys.argv[1] == "1":
    assert reuse_freed_memory()
a = np.ones(64 * 2**20 // 8)   # a block, freed, then one of the same size again
del a
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(64 * 2**20 // 8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_are_reused_without_new_page_faults():
    def faults(on: bool) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, "1" if on else "0"], capture_output=True,
                             text=True, check=True)
        return int(out.stdout)

    default, reused = faults(False), faults(True)
    assert default >= 16  # the kernel maps and zeroes the second block afresh (huge pages or not)
    assert reused <= default // 8


@pytest.mark.parametrize("value,want", [("0,1", ["0", "1"]), ("2,-1,3", ["2"]), ("", []),
                                        ("GPU-5d1e", ["GPU-5d1e"])])
def test_gpu_devices_follow_cuda_visible_devices(monkeypatch, value, want):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert gpu_devices() == want
