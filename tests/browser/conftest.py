"""Browser-test fixtures: the node modes ("classic", "vue") the bench's frontend supports."""

from __future__ import annotations

import pytest

from comfyui_hdr.harness.benches import selected
from comfyui_hdr.harness.browser import node_modes

NODE_MODES = node_modes(selected().frontend)


@pytest.fixture(scope="module", params=NODE_MODES)
def node_mode(request) -> str:
    """A module's page shows its nodes in this mode; the module runs once per mode."""
    return request.param
