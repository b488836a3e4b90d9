"""Atomic, no-clobber file writes: a reader never sees half a file, a failure leaves none.

The bytes go to a hidden temporary file in the destination folder, are fsynced, and the
file is then moved into place with a hard link (which fails if the name exists, so an
existing file is never replaced unless ``overwrite`` is set) or ``os.replace``. The file
gets the permissions an ordinary ``open(path, "w")`` would give it, not the owner-only mode
of the temporary file: a new file 0666 minus the umask, a replaced one its old mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _file_mode() -> int:
    """0666 minus the process umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status
                         if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path`` atomically.

    Raises ``FileExistsError`` (naming the file and the ``overwrite`` option) if ``path``
    exists and ``overwrite`` is False, before anything is written. On any exception the
    temporary file is removed and nothing appears at ``path``.
    """
    final = Path(path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pick another name or set overwrite=True")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp",
                                             dir=final.parent)
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary_path, stat.S_IMODE(final.stat().st_mode) if final.exists()
                 else _file_mode())
        if overwrite:
            os.replace(temporary_path, final)
        else:
            try:
                os.link(temporary_path, final)
            except FileExistsError:
                raise FileExistsError(
                    f"{final} appeared while writing; pick another name or set overwrite=True"
                ) from None
            temporary_path.unlink()
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
