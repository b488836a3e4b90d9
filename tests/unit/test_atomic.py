"""Atomic writes: the file appears whole or not at all, never clobbers unless asked, and
has the permissions an ordinary write would give it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from comfyui_hdr.hdr.atomic import atomic_path


def test_the_file_gets_the_mode_a_plain_open_gives(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as temporary:
        temporary.write_text("x")
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
             for name in ("plain.txt", "atomic.txt")}
    assert modes["atomic.txt"] == modes["plain.txt"]


def test_the_mode_follows_the_umask(tmp_path):
    script = "\n".join([
        "import os, stat, sys",
        "os.umask(0o027)",
        "from comfyui_hdr.hdr.atomic import atomic_path",
        "with atomic_path(sys.argv[1]) as temporary:",
        "    temporary.write_text('x')",
        "print(oct(stat.S_IMODE(os.stat(sys.argv[1]).st_mode)))"])
    mode = subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.txt")],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert mode == "0o640"  # 0666 & ~0027


def test_an_existing_file_is_kept_and_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"new")
    assert target.read_bytes() == b"old"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "failed.bin") as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.bin"]
    with atomic_path(target, overwrite=True) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "shared.exr"
    target.write_bytes(b"old")
    os.chmod(target, 0o664)
    with atomic_path(target, overwrite=True) as temporary:
        temporary.write_bytes(b"new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o664 and target.read_bytes() == b"new"
