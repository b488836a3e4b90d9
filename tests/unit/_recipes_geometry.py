"""Call recipes for the environment-map geometry of ``hdr/``: pinhole rays, equirectangular
coordinates and sampling, camera paths."""

from __future__ import annotations

import torch
from _contract import call, expect, scene

from comfyui_hdr.hdr import camera_path, equirect


def _directions(device) -> torch.Tensor:
    """Unit directions [2, 5, 3] away from the poles and the seam, on ``device``."""
    generator = torch.Generator().manual_seed(5)
    raw = torch.randn(2, 5, 3, generator=generator) * torch.tensor([1.0, 0.5, 1.0]) \
        - torch.tensor([0.0, 0.0, 1.5])
    return (raw / raw.norm(dim=-1, keepdim=True)).to(device)


def _coordinates(device) -> tuple[torch.Tensor, torch.Tensor]:
    """Map coordinates (u, v) [7] covering the seam and both poles, on ``device``."""
    u = torch.tensor([0.0, 0.01, 0.3, 0.5, 0.77, 0.995, 1.0])
    v = torch.tensor([0.0, 0.02, 0.25, 0.5, 0.7, 0.99, 1.0])
    return u.to(device), v.to(device)


RECIPES = {
    "equirect.camera_rays": lambda d, t: expect(
        call(equirect.camera_rays, 4, 6, 60.0, 30.0, 10.0, 5.0, supersample=2, device=d),
        half="none", on=d, dtype="float32"),
    "equirect.direction_to_equirect": lambda d, t: call(equirect.direction_to_equirect,
                                                        _directions(d)),
    "equirect.equirect_to_direction": lambda d, t: call(equirect.equirect_to_direction,
                                                        *_coordinates(d)),
    "equirect.sample_equirect": lambda d, t: expect(
        call(equirect.sample_equirect, scene(d, (8, 16, 3)), *_coordinates(d)),
        half_args=("arg0",)),
    "equirect.render_view": lambda d, t: call(equirect.render_view, scene(d, (8, 16, 3)), 4, 6,
                                              90.0, 150.0, 70.0, 10.0, supersample=2),
    "camera_path.pan_tilt_path": lambda d, t: expect(call(camera_path.pan_tilt_path, 5, 2.0, 3),
                                                     half="none"),
}
