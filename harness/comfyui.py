"""Start and stop a real ComfyUI server (CPU) for tests and the demo, on any supported bench.

Installing is :mod:`.comfyui_install`'s job (re-exported here); which ComfyUI release and
frontend run is :mod:`.benches`'s (default: the newest, ComfyUI 0.33.0 + frontend 1.58.1).
The pack is linked into the server's ``custom_nodes/comfyui_hdr``. Nothing here imports
ComfyUI; the server runs in its own process, stopped by PID.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .benches import NEWEST, Bench
from .comfyui_install import (
    DEFAULT_HOME,
    PACK_ROOT,
    comfyui_dir,
    frontend_root,
    install,
    link_pack,
    pinned_site,
)

__all__ = ["DEFAULT_HOME", "PACK_ROOT", "Server", "comfyui_dir", "free_port", "install",
           "link_pack", "start", "stop_pid"]


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
    bench: Bench = NEWEST

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
    bench: Bench = NEWEST,
) -> Server:
    """Start ComfyUI on a free loopback port with its folders under ``base``; wait until ready.

    ``base`` gets ``input/``, ``output/``, ``user/``, ``temp/``, ``models/`` and
    ``custom_nodes/`` (with this pack linked in) so a test session never touches the
    install's own folders. ``bench`` picks the ComfyUI release and the frontend.
    """
    target = comfyui_dir(home, bench.comfyui)
    frontend = frontend_root(home, bench.frontend)
    if not (target / "main.py").exists() or not (frontend / "index.html").exists():
        raise RuntimeError(f"{bench.label} is not installed in {home}; run: {python} -m "
                           f"comfyui_hdr.harness install --comfyui {bench.comfyui} "
                           f"--frontend {bench.frontend}")
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
        "--front-end-root", str(frontend),
        *extra_args,
    ]
    pythonpath = [str(pinned_site(home, bench.comfyui)), os.environ.get("PYTHONPATH", "")]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=target, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1",
                 "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))},
        )
    server = Server(process, port, base, log_path, bench)
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
