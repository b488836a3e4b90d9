"""Where Load EXR may read, and one answer for every file it cannot read.

Names are confined to ComfyUI's input folder plus the folders an administrator lists under
the key :data:`ALLOW_LIST_KEY` in ``extra_model_paths.yaml`` (ComfyUI adds any key there to
``folder_paths``), e.g.::

    comfyui_hdr:
        hdr_exr_inputs: |
            /mnt/plates
            /mnt/renders

A relative name is read from the input folder; an absolute one only inside a listed folder.
``..`` is refused outright and symlinks are followed before the check (a link in the input
folder to elsewhere is refused: list its target instead), so neither a name nor a glob can
reach outside. A missing file, an unreadable one and one that is not OpenEXR get the same
message, so a caller of the HTTP API cannot learn which paths exist.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

ALLOW_LIST_KEY = "hdr_exr_inputs"
_DRIVE = re.compile(r"^[A-Za-z]:")


def allowed_roots() -> list[Path]:
    """ComfyUI's input folder, then the folders listed under :data:`ALLOW_LIST_KEY`."""
    import folder_paths

    listed = folder_paths.folder_names_and_paths.get(ALLOW_LIST_KEY, ([], set()))[0]
    return [Path(folder_paths.get_input_directory()), *(Path(folder) for folder in listed)]


def confine(name: str, roots: list[Path], input_name: str = "path") -> Path:
    """``name`` as a path under one of ``roots`` (relative names under the first), resolved.

    Raises ``ValueError`` naming ``input_name`` and the fix for ``..``, NUL, or a path
    (symlinks followed) outside every root. Nothing about the file's existence is revealed.

    >>> confine("plates/a.exr", [Path("/srv/input")]).as_posix()
    '/srv/input/plates/a.exr'
    """
    text = name.strip()
    if "\0" in text or ".." in text.replace("\\", "/").split("/"):
        raise ValueError(f"{input_name} {name!r} contains '..' or NUL; name a file inside "
                         "ComfyUI's input folder, e.g. plates/shot_%05d.exr")
    path = Path(text)
    absolute = path.is_absolute() or bool(_DRIVE.match(text))
    resolved = (path if absolute else roots[0] / path).resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    raise ValueError(
        f"{input_name} {name!r} is outside ComfyUI's input folder and the folders listed "
        f"under '{ALLOW_LIST_KEY}' in extra_model_paths.yaml; use a name relative to the input "
        "folder (plates/shot_%05d.exr) or ask for the folder to be listed there")


def unreadable(shown: str) -> ValueError:
    """The one error for a name that is missing, unreadable or not an OpenEXR file."""
    return ValueError(
        f"Load EXR cannot read {shown!r}: no readable OpenEXR file or sequence by that name in "
        f"ComfyUI's input folder or a folder listed under '{ALLOW_LIST_KEY}' (missing and "
        "unreadable files get this same answer); check the name, or for a sequence use a "
        "pattern like plates/shot_%05d.exr")


def fingerprint(paths: list[Path]) -> str:
    """Names, sizes and modification times of ``paths``, as one string (for IS_CHANGED)."""
    digest = hashlib.sha256()
    for path in paths:
        status = os.stat(path)
        digest.update(f"{path.name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()
