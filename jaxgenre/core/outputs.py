"""Output files that are whole or absent: every file a jaxgenre tool writes goes through here.

A file is written under a temporary name beside its target (same directory, so same file
system) and renamed over the target only once it is complete. An interrupted tool, a full
disk, or two tools writing the same `--output` at once therefore never leave a truncated or
interleaved file, and an earlier file of that name survives a run that fails.

  with outputs.replacing("preds.csv", "w", newline="") as f:   # a file object
      f.write(...)
  with outputs.staged("out.wav") as tmp:                       # a path, for writers that
      soundfile.write(tmp, audio, rate)                        # open the file themselves
  outputs.write_text(workdir / "config.json", text)

Object stores (`gs://`, `s3://`) have no rename: there the writer writes to a local
temporary file, uploaded when complete, so an object is whole or absent too (a directory, the
export, is uploaded file by file). Before a long job, `check_writable` and `refuse_inputs` fail
in a second rather than after the work.
"""
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from etils import epath

from jaxgenre.core import errors


def _is_remote(path) -> bool:
    return "://" in os.fspath(path)


def _clean(path) -> str:
    """`path` as a string without a trailing separator ('out/' and 'out' name one target)."""
    path = os.fspath(path)
    return path.rstrip("/" + os.sep) or path


def _temporary_name(path: str, directory: str | None = None) -> str:
    """`<directory or path's own>/.name.partial-<random><suffix>`: hidden, unique per writer,
    and with the target's suffix kept (soundfile and matplotlib choose the format from it)."""
    head, name = os.path.split(path)
    stem, suffix = os.path.splitext(name)
    return os.path.join(directory or head, f".{stem}.partial-{secrets.token_hex(4)}{suffix}")


def _remove(tmp: str) -> None:
    if os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.remove(tmp)


def _upload(local: str, remote: str) -> None:
    """Copies the file or directory `local` to the object-store path `remote`."""
    if not os.path.isdir(local):
        epath.Path(local).copy(remote, overwrite=True)
        return
    for root, _, files in os.walk(local):
        for name in files:
            src = os.path.join(root, name)
            dst = epath.Path(remote) / os.path.relpath(src, local)
            dst.parent.mkdir(parents=True, exist_ok=True)
            epath.Path(src).copy(dst, overwrite=True)


@contextlib.contextmanager
def staged(path, keep_on_error: str | None = None) -> Iterator[str]:
    """Yields a temporary path beside `path` (its parent directories made); when the block
    ends without an exception the temporary file or directory is renamed to `path`, replacing
    a file (or an empty directory) there; on an exception (Ctrl-C included) it is deleted and
    `path` is left as it was, or, when `keep_on_error` names a path and the temporary file is
    not empty, moved there (what an interrupted run had written). For writers that take a
    file name (soundfile, tf.saved_model.save). For an object-store `path` the temporary path
    is local and its content is uploaded instead of renamed."""
    path = _clean(path)
    remote = _is_remote(path)
    if remote:
        tmp = _temporary_name(path, tempfile.mkdtemp(prefix="jaxgenre-"))
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = _temporary_name(path)
    place = _upload if remote else os.replace
    try:
        yield tmp
        place(tmp, path)
    except BaseException:
        if keep_on_error and os.path.isfile(tmp) and os.path.getsize(tmp):
            place(tmp, keep_on_error)
        raise
    finally:
        _remove(os.path.dirname(tmp) if remote else tmp)


@contextlib.contextmanager
def replacing(path, mode: str = "w", keep_on_error: str | None = None, **open_kwargs):
    """`open(path, mode)` whose content appears at `path` only when the block completes (see
    `staged`, and its `keep_on_error`); the data is flushed to disk before the rename, so a
    crash right after it leaves the new file or the old one, never an empty one."""
    if "w" not in mode:
        raise ValueError(f"replacing() writes whole files: mode {mode!r} has no 'w'.")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with staged(path, keep_on_error) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(path, text: str) -> None:
    """Writes `text` to `path` whole (see `replacing`)."""
    with replacing(path, "w") as f:
        f.write(text)


def check_writable(path, flag: str = "--output", directory: bool = False) -> None:
    """Raises `errors.UserError` naming `flag` when `path` cannot be written: a directory on
    its way is a file or is not writable, or (`directory` False) `path` is an existing
    directory, or (`directory` True) an existing file. Checks by creating and deleting a file
    in the nearest existing directory, which is what the write will need; leaves nothing."""
    path = _clean(path)
    if _is_remote(path):
        return
    if os.path.exists(path) and os.path.isdir(path) != directory:
        raise errors.UserError(f"{flag} {path} is {'a file' if directory else 'a directory'}; "
                               f"pass {'a directory' if directory else 'a file'} path.")
    existing = os.path.abspath(path if directory else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise errors.UserError(f"{flag} {path}: {existing} is a file, not a directory; pass a "
                               "path in a directory.")
    try:
        with open(_temporary_name(os.path.join(existing, "probe")), "w") as f:
            os.remove(f.name)
    except OSError as e:
        raise errors.UserError(f"{flag} {path} cannot be written ({e.strerror or e}); pass a "
                               "path in a directory you can write to.") from None


def refuse_inputs(outputs: Iterable, inputs: Iterable, flag: str = "--output") -> None:
    """Raises `errors.UserError` when any of `outputs` is one of `inputs` (the same file,
    through any path or link): a tool never writes over what it reads."""
    existing = {}
    for p in inputs:
        if not _is_remote(p) and os.path.exists(p):
            existing[os.path.realpath(p)] = os.fspath(p)
    for out in outputs:
        if _is_remote(out):
            continue
        same = existing.get(os.path.realpath(out))
        if same is not None:
            raise errors.UserError(f"{flag} {out} is the input {same}: it would be overwritten. "
                                   f"Pass another {flag}.")
