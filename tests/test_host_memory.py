"""host_memory: with its settings a freed large block comes back without a page fault per 4 KiB
page, a program relaunches itself once with them, and bad settings are refused by name."""
import importlib.machinery
import os
import subprocess
import sys
import types

import pytest

from jaxgenre.core import host_memory

_BLOCK = 256 << 20
_CHILD = f"""
import ctypes, resource
libc = ctypes.CDLL(None)  # the process's malloc: glibc's, or a preloaded one
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)

def touch():  # allocate, write every page, free: what XLA:CPU does with a step's temporaries
    p = libc.malloc({_BLOCK}); ctypes.memset(p, 1, {_BLOCK}); libc.free(p)

touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_GLIBC_CPU_HOST = pytest.mark.skipif(
    not host_memory._glibc() or host_memory._accelerator_present(),
    reason="malloc settings apply on Linux/glibc hosts without an accelerator")


def _faults(setting: str) -> int:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES")}
    env.update(host_memory.environment(setting))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1])


def _thp_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@_GLIBC_CPU_HOST
@pytest.mark.parametrize("setting", ["huge_pages", "jemalloc", "tcmalloc"])
def test_a_freed_block_comes_back_without_faulting_every_page(setting):
    if setting in ("jemalloc", "tcmalloc") and not host_memory.library(setting):
        pytest.skip(f"no {setting} library installed on this host")
    if setting == "huge_pages" and not _thp_available():
        pytest.skip("transparent huge pages are off on this kernel")
    pages = _BLOCK // 4096
    assert _faults("glibc") > pages // 2  # glibc's default: a fresh mapping, every page faulted
    assert _faults(setting) < pages // 20


@_GLIBC_CPU_HOST
def test_a_program_relaunches_itself_once_with_the_setting(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys\n"
        "from jaxgenre.core import host_memory\n"
        "print('start', os.getpid(), flush=True)\n"
        "print('active', host_memory.configure(relaunch=True), host_memory.active(), sys.argv[1:])\n"
        "print('tunables', os.environ.get('GLIBC_TUNABLES'))\n")
    env = {**os.environ, host_memory.SETTING_ENV: "huge_pages"}
    env.pop("JAXGENRE_MALLOC_ACTIVE", None)
    env.pop("GLIBC_TUNABLES", None)
    lines = subprocess.run([sys.executable, str(script), "--x", "1"], env=env, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    starts = [line for line in lines if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == starts[1]  # once more, same process (exec)
    assert lines[-2] == "active huge_pages huge_pages ['--x', '1']"
    assert lines[-1] == "tunables glibc.malloc.hugetlb=1"


def test_imported_code_and_host_programs_change_nothing(monkeypatch):
    monkeypatch.delenv("JAXGENRE_MALLOC_ACTIVE", raising=False)
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("relaunched"))
    before = dict(os.environ)
    host_memory.configure(relaunch=False)
    # `%run -m jaxgenre.train` in a Jupyter kernel: __main__ is the entry point, the process
    # is the kernel
    main = types.ModuleType("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec("jaxgenre.train", None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "ipykernel_launcher", "-f", "k.json"])
    host_memory.configure(relaunch=True)
    assert dict(os.environ) == before


def test_bad_settings_are_refused_by_name(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with pytest.raises(ValueError, match="valid: auto, tcmalloc, jemalloc, huge_pages, glibc"):
        host_memory.resolve("mimalloc")
    monkeypatch.setattr(host_memory, "_glibc", lambda: True)
    monkeypatch.setattr(host_memory, "_accelerator_present", lambda: False)
    monkeypatch.setattr(host_memory, "library", lambda setting: None)
    with pytest.raises(ValueError, match="apt install libjemalloc2"):
        host_memory.resolve("jemalloc")
    with pytest.raises(ValueError, match="apt install libtcmalloc-minimal4"):
        host_memory.resolve("tcmalloc")
    assert host_memory.resolve("auto") == "huge_pages"


def test_accelerator_hosts_and_a_users_own_malloc_are_left_alone(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: True)
    monkeypatch.setattr(host_memory, "_accelerator_present", lambda: True)
    assert host_memory.resolve("auto") == "glibc"
    assert host_memory.for_new_processes() == {}
    monkeypatch.setattr(host_memory, "_accelerator_present", lambda: False)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so.4")
    assert host_memory.resolve("auto") == "glibc"
