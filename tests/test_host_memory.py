"""host_memory: a freed large block is reused without new page faults (Linux/glibc only)."""
import subprocess
import sys

import pytest

from jaxgenre import host_memory

_CHILD = """
import ctypes, resource, sys
from jaxgenre import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == "1" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)

def touch_256mb():  # allocate, write every page, free: what XLA:CPU does with its temp block
    p = libc.malloc(256 << 20); ctypes.memset(p, 1, 256 << 20); libc.free(p)

touch_256mb()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_256mb()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep_freed: bool) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, "1" if keep_freed else "0"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or host_memory._accelerator_present(),
                    reason="glibc malloc settings, applied on CPU-only hosts")
def test_freed_block_is_reused_without_page_faults():
    applied, faults = _faults(keep_freed=True)
    assert applied
    _, default_faults = _faults(keep_freed=False)
    pages = (256 << 20) // 4096
    assert default_faults > pages // 2  # glibc's default: a fresh mapping, every page faulted
    assert faults < pages // 100


def test_hosts_with_an_accelerator_are_left_alone(monkeypatch):
    monkeypatch.setattr(host_memory, "_accelerator_present", lambda: True)
    assert host_memory.keep_freed_memory() is False
