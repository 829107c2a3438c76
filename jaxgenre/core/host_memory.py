"""A malloc for XLA:CPU that reuses each step's freed temporaries without holding extra memory.

Why: XLA:CPU allocates one block for all of a step's temporaries (937 MB for MobileNetV2 at
batch 32) and frees it when the step ends. glibc serves a block that large with a fresh `mmap`
and unmaps it on free, so every step faults in every 4 KiB page again: 233k page faults and
about 0.5 s of kernel time per step on a 2-core VM. Settings (`JAXGENRE_MALLOC`):

- 'tcmalloc': the system's tcmalloc (`apt install libtcmalloc-minimal4`) is preloaded, as is:
  it keeps freed spans for reuse and returns memory gradually, so the step reuses the block
  it freed and the peak stays near glibc's.
- 'jemalloc': the system's libjemalloc (`apt install libjemalloc2`) is preloaded with freed
  pages kept (`dirty_decay_ms:-1`; its time-based decay unmaps the step's block at once), in
  one arena (`narenas:1`).
- 'huge_pages': glibc with `glibc.malloc.hugetlb=1`: its fresh mappings ask for transparent
  huge pages, so the block faults in 2 MiB at a time (512x fewer faults) and is still
  returned on free. Needs the kernel's THP mode `madvise` or `always` (the common defaults).
- 'auto' (default): the first of 'tcmalloc', 'jemalloc' whose library is installed, else
  'huge_pages'.
- 'glibc': malloc as the process started.

The dynamic loader and glibc read these settings only when a process starts, so an entry
point run as a program re-executes itself once with them (`configure(relaunch=True)`): same
PID, same arguments, before TensorFlow or JAX is imported. An earlier single-arena `mallopt`
setting had the speed but held 1.6x to 2.3x the memory (fragmentation in one heap that never
shrinks). Figures: `python -m benchmarks.host_memory`.

On GPU and TPU hosts the step's temporaries live in device memory: nothing is changed there.
"""
import ctypes.util
import glob
import os
import sys

SETTINGS = ("auto", "tcmalloc", "jemalloc", "huge_pages", "glibc")
SETTING_ENV = "JAXGENRE_MALLOC"
_ACTIVE_ENV = "JAXGENRE_MALLOC_ACTIVE"  # set in the re-executed process: never relaunch twice
_LIBRARIES = {"tcmalloc": "tcmalloc_minimal", "jemalloc": "jemalloc"}  # for find_library
_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}  # Debian/Ubuntu
# Keep freed pages (its decay unmaps the step's block at once), in one arena: with one per
# thread each kept freed blocks of its own (`benchmarks.host_memory`, medians of 3: peak 1.27x
# glibc's with an arena per thread, 1.13x with one).
_JEMALLOC_CONF = "dirty_decay_ms:-1,narenas:1"
_OTHER_MALLOCS = ("jemalloc", "tcmalloc", "mimalloc")  # a user's own preload wins
_STARTED_WITH = os.environ.get(_ACTIVE_ENV, "glibc")  # read before anyone edits os.environ


def _accelerator_present() -> bool:
    """An NVIDIA GPU or a Cloud TPU (/dev/accel*, /dev/vfio on newer TPU VMs) on this host."""
    return any(glob.glob(pattern) for pattern in ("/dev/nvidia[0-9]*", "/dev/accel[0-9]*",
                                                  "/dev/vfio/[0-9]*"))


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # musl and others do not know the name
        return False


def library(setting: str) -> str | None:
    """The system's shared library for 'tcmalloc' or 'jemalloc' (e.g. 'libjemalloc.so.2'), or
    None where it is not installed."""
    return ctypes.util.find_library(_LIBRARIES[setting])


def resolve(setting: str) -> str:
    """The concrete setting for this host: 'tcmalloc', 'jemalloc', 'huge_pages' or 'glibc'.

    Raises ValueError for an unknown name (listing the valid ones) or for 'tcmalloc' /
    'jemalloc' on a host without the library (naming the package that provides it).
    """
    if setting not in SETTINGS:
        raise ValueError(f"{SETTING_ENV}={setting!r} is not a malloc setting; valid: "
                         f"{', '.join(SETTINGS)}.")
    preloaded = os.environ.get("LD_PRELOAD", "")
    if (setting == "glibc" or not _glibc() or _accelerator_present()
            or (setting == "auto" and any(m in preloaded for m in _OTHER_MALLOCS))):
        return "glibc"
    if setting == "auto":
        return next((s for s in _LIBRARIES if library(s)), "huge_pages")
    if setting in _LIBRARIES and not library(setting):
        raise ValueError(f"{SETTING_ENV}={setting} but its library is not installed: install it "
                         f"(Debian/Ubuntu: apt install {_PACKAGES[setting]}) or use "
                         f"{SETTING_ENV}=huge_pages.")
    return setting


def environment(setting: str) -> dict[str, str]:
    """The variables that make a new process start with `setting` (a `resolve` result), added
    to what the current environment already has."""
    if setting in _LIBRARIES:
        preload = {"LD_PRELOAD": " ".join(p for p in (os.environ.get("LD_PRELOAD"),
                                                      library(setting)) if p)}
        if setting == "tcmalloc":
            return preload
        conf = ",".join(c for c in (_JEMALLOC_CONF, os.environ.get("MALLOC_CONF")) if c)
        return {**preload, "MALLOC_CONF": conf}
    if setting == "huge_pages":
        tunables = ":".join(t for t in (os.environ.get("GLIBC_TUNABLES"), "glibc.malloc.hugetlb=1")
                            if t)
        return {"GLIBC_TUNABLES": tunables}
    return {}


def for_new_processes() -> dict[str, str]:
    """The variables with which a new process starts with `JAXGENRE_MALLOC` applied and does
    not relaunch itself; empty where the setting resolves to 'glibc'. Raises as `resolve`."""
    if _ACTIVE_ENV in os.environ:  # started with it already: its children inherit it
        return {}
    setting = resolve(os.environ.get(SETTING_ENV, "auto"))
    env = environment(setting)
    return {**env, _ACTIVE_ENV: setting} if env else {}


def _run_as_program() -> bool:
    """Whether this process's command line runs the `__main__` module itself (`python -m X`,
    `python X.py`), rather than a host that runs it (IPython's %run, runpy in a program)."""
    main = sys.modules.get("__main__")
    argv = sys.orig_argv
    spec = getattr(main, "__spec__", None)
    if spec is not None and "-m" in argv:
        i = argv.index("-m")
        return i + 1 < len(argv) and spec.name in (argv[i + 1], argv[i + 1] + ".__main__")
    path = getattr(main, "__file__", None)
    return bool(path) and any(os.path.isfile(a) and os.path.samefile(a, path) for a in argv[1:])


def active() -> str:
    """The setting this process started with ('glibc' unless `configure` relaunched it)."""
    return _STARTED_WITH


def configure(relaunch: bool) -> str:
    """Applies `JAXGENRE_MALLOC` (default 'auto') and returns the setting in effect.

    Args:
      relaunch: True only where the caller is the program itself (`__name__ == "__main__"`):
        the process then re-executes itself with `environment(...)` and does not return. When
        False (jaxgenre imported by a notebook or another program) nothing is changed.
    """
    if _ACTIVE_ENV in os.environ or not relaunch or not _run_as_program():
        return active()  # relaunched already, or a host program (IPython, runpy) we must keep
    try:
        env = for_new_processes()
    except ValueError as e:
        sys.exit(f"error: {e}")
    if not env:
        return "glibc"
    os.environ.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
