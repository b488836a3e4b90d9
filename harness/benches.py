"""The ComfyUI benches the pack supports and tests: a ComfyUI release and a frontend.

A *bench* is what an artist runs: one ComfyUI server release with one frontend package.
The pack is tested on

- ComfyUI 0.33.0 with frontend 1.58.1 (the newest of each here): the whole suite, classic and
  Vue ("Nodes 2.0") node modes; the demo runs on it;
- ComfyUI 0.33.0 with frontend 1.49.6 (the low end of the 1.49-1.58 frontends artists run):
  the smoke subset (``pytest -m smoke``);
- ComfyUI 0.3.75 with its own frontend 1.32.9 (the oldest supported release): the smoke subset.

The bench under test is chosen by ``COMFYUI_HDR_COMFYUI`` and ``COMFYUI_HDR_FRONTEND``
(default: the newest). Nothing here imports ComfyUI.
"""

from __future__ import annotations

import dataclasses
import os

# Each release's own frontend: 0.3.75's requirements.txt pins 1.32.9. 0.33.0's tarball pins
# 1.48.7; the pack tests 0.33.0 with 1.49.6 instead, the oldest frontend of the 1.49-1.58 range
# artists run with it (issue 13), and with the newest, 1.58.1.
RELEASE_FRONTEND = {"0.3.75": "1.32.9", "0.33.0": "1.49.6"}
NEWEST_COMFYUI = "0.33.0"
NEWEST_FRONTEND = "1.58.1"
OLDEST_COMFYUI = "0.3.75"


@dataclasses.dataclass(frozen=True)
class Bench:
    """One ComfyUI release with one frontend package version."""

    comfyui: str
    frontend: str

    def __post_init__(self):
        if self.comfyui not in RELEASE_FRONTEND:
            raise ValueError(f"ComfyUI {self.comfyui} is not a bench this harness installs; "
                             f"choose one of {sorted(RELEASE_FRONTEND)} "
                             "(COMFYUI_HDR_COMFYUI)")

    @property
    def label(self) -> str:
        return f"ComfyUI {self.comfyui} + frontend {self.frontend}"


NEWEST = Bench(NEWEST_COMFYUI, NEWEST_FRONTEND)
# Every bench scripts/test.sh runs: the first gets the whole suite, the others the smoke subset.
TESTED = (NEWEST, Bench("0.33.0", RELEASE_FRONTEND["0.33.0"]),
          Bench(OLDEST_COMFYUI, RELEASE_FRONTEND[OLDEST_COMFYUI]))


def default_frontend(release: str) -> str:
    """The frontend a release runs with when none is named: the newest for the newest
    release, the release's own pinned one for older releases."""
    return NEWEST_FRONTEND if release == NEWEST_COMFYUI else RELEASE_FRONTEND.get(
        release, NEWEST_FRONTEND)


def bench(release: str | None = None, frontend: str | None = None) -> Bench:
    """The bench of ``release`` (default: COMFYUI_HDR_COMFYUI, else the newest) and
    ``frontend`` (default: COMFYUI_HDR_FRONTEND, else :func:`default_frontend`)."""
    release = release or os.environ.get("COMFYUI_HDR_COMFYUI") or NEWEST_COMFYUI
    frontend = frontend or os.environ.get("COMFYUI_HDR_FRONTEND") or default_frontend(release)
    return Bench(release, frontend)


def selected() -> Bench:
    """The bench under test: COMFYUI_HDR_COMFYUI / COMFYUI_HDR_FRONTEND, else the newest."""
    return bench()
