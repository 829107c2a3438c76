"""Keep freed host memory in the process, so XLA:CPU does not page-fault its buffers every step.

XLA:CPU allocates one block for all of a step's temporaries (937 MB for MobileNetV2 at batch
32) with `posix_memalign` on one of its worker threads, and frees it when the step ends. glibc
serves a block that large from a per-thread arena with a fresh `mmap` and unmaps it on free, so
every step faults in every page again: 233k page faults and about 0.8 s of kernel time per
step on a 2-core VM (`python -m benchmarks.host_memory`). With a single malloc arena, no `mmap`
and no trimming, the freed block stays mapped and the next step reuses it. Accelerator memory
is not affected. The cost: the process keeps its peak host memory until it exits.

On GPU and TPU hosts the step's temporaries live in device memory, and a single arena could
make the input pipeline's many threads wait on one lock, so nothing is changed there.
"""
import ctypes
import glob
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def _accelerator_present() -> bool:
    """An NVIDIA GPU or a Cloud TPU (/dev/accel*, /dev/vfio on newer TPU VMs) on this host."""
    return any(glob.glob(pattern) for pattern in ("/dev/nvidia[0-9]*", "/dev/accel[0-9]*",
                                                  "/dev/vfio/[0-9]*"))


def keep_freed_memory() -> bool:
    """Sets glibc malloc as above; True when it applied, False on a host with an accelerator
    or off Linux/glibc (e.g. macOS, musl).

    Call it before importing TensorFlow or JAX: glibc fixes its number of arenas when the first
    thread besides the main one allocates, and threads keep the arena they started with.
    """
    if not sys.platform.startswith("linux") or _accelerator_present():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
    return all(mallopt(param, value) == 1 for param, value in settings)
