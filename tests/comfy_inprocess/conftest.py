"""ComfyUI 0.3.75 imported in the test process (CPU), for tests of model patches.

A missing install is a collection error with the install command in it, never a skip.
"""

from __future__ import annotations

from comfyui_hdr.harness.inprocess import use_comfyui

use_comfyui()
