"""Equirectangular maps through a pinhole camera (hdr/equirect.py, hdr/camera_path.py).

Oracles: the gnomonic projection of spherical trigonometry (Snyder, "Map Projections: A
Working Manual", USGS 1987, p. 164-165) for where a direction lands in the picture, written
here independently of the module's rotation matrices; the solid angle of a pinhole pixel
(``cos^3(theta) / f^2``) for the flux of a sun; exact column shifts of the map for the seam
and for pans.
"""

from __future__ import annotations

import math

import pytest
import torch

from comfyui_hdr.hdr.camera_path import pan_tilt_path
from comfyui_hdr.hdr.equirect import (
    camera_rays,
    direction_to_equirect,
    equirect_to_direction,
    render_view,
)

MAP_HEIGHT = 1024
SIGMA = math.radians(0.5)  # dot radius: 2.8 map pixels, ~2 render pixels
SUN_PEAK = 30000.0
VIEW = {"yaw": 40.0, "pitch": 20.0, "roll": 10.0}
SIZE, FOV = 256, 60.0
FOCAL = (SIZE / 2) / math.tan(math.radians(FOV / 2))
DOTS = [(VIEW["yaw"] + dlon, VIEW["pitch"] + dlat, (0.2 + 0.2 * i % 1.0, 1.0, 0.5 + i * 0.1))
        for i, (dlon, dlat) in enumerate((a, b) for a in (-18, -9, 0, 9, 18) for b in (-12, 12))]
SUN = (VIEW["yaw"] + 5.0, VIEW["pitch"] - 3.0)


def _direction(lon_degrees: float, lat_degrees: float) -> torch.Tensor:
    lon, lat = math.radians(lon_degrees), math.radians(lat_degrees)
    return torch.tensor([math.cos(lat) * math.sin(lon), math.sin(lat),
                         -math.cos(lat) * math.cos(lon)], dtype=torch.float64)


def _texel_directions(height: int) -> torch.Tensor:
    v = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    u = (torch.arange(2 * height, dtype=torch.float64) + 0.5) / (2 * height)
    return equirect_to_direction(u[None, :].expand(height, -1), v[:, None].expand(-1, 2 * height))


def _blob(directions: torch.Tensor, lon: float, lat: float) -> torch.Tensor:
    """A Gaussian of angular radius SIGMA around (lon, lat), peak 1."""
    cosine = (directions @ _direction(lon, lat)).clamp(-1, 1)
    return torch.exp(-0.5 * (torch.arccos(cosine) / SIGMA) ** 2)


@pytest.fixture(scope="module")
def dot_map() -> torch.Tensor:
    """Coloured dots at DOTS and a 30,000 sun at SUN on black, float32 [1024, 2048, 3]."""
    directions = _texel_directions(MAP_HEIGHT)
    pixels = torch.zeros(MAP_HEIGHT, 2 * MAP_HEIGHT, 3, dtype=torch.float64)
    for lon, lat, colour in DOTS:
        pixels += _blob(directions, lon, lat)[..., None] * torch.tensor(colour, dtype=torch.float64)
    pixels += SUN_PEAK * _blob(directions, *SUN)[..., None]
    return pixels.float()


def _gnomonic(lon: float, lat: float, yaw: float, pitch: float, roll: float) -> tuple:
    """(column, row) in pixel units (pixel centres at +0.5) of direction (lon, lat)."""
    lam, phi, lam0, phi0 = (math.radians(a) for a in (lon, lat, yaw, pitch))
    cos_c = math.sin(phi0) * math.sin(phi) + math.cos(phi0) * math.cos(phi) * math.cos(lam - lam0)
    x = math.cos(phi) * math.sin(lam - lam0) / cos_c
    y = (math.cos(phi0) * math.sin(phi)
         - math.sin(phi0) * math.cos(phi) * math.cos(lam - lam0)) / cos_c
    rho = math.radians(roll)
    x, y = x * math.cos(rho) - y * math.sin(rho), x * math.sin(rho) + y * math.cos(rho)
    return SIZE / 2 + FOCAL * x, SIZE / 2 - FOCAL * y


def _centroid(image: torch.Tensor, column: float, row: float, radius: int = 9):
    """Intensity-weighted centre (column, row) and sum per channel in a window."""
    top, left = round(row) - radius, round(column) - radius
    window = image[top:top + 2 * radius + 1, left:left + 2 * radius + 1].double()
    weight = window.sum(-1)
    rows = torch.arange(top, top + 2 * radius + 1, dtype=torch.float64) + 0.5
    columns = torch.arange(left, left + 2 * radius + 1, dtype=torch.float64) + 0.5
    total = weight.sum()
    return (float((weight.sum(0) * columns).sum() / total),
            float((weight.sum(1) * rows).sum() / total), window.sum((0, 1)))


def test_dots_and_sun_land_where_the_gnomonic_projection_puts_them(dot_map):
    image = render_view(dot_map, SIZE, SIZE, FOV, supersample=2, **VIEW)
    errors = []
    for lon, lat, colour in DOTS:
        column, row = _gnomonic(lon, lat, **VIEW)
        found_column, found_row, sums = _centroid(image, column, row)
        errors.append(math.hypot(found_column - column, found_row - row))
        # the dot keeps its colour: channel sums in the colour's ratios (0.5%)
        ratios = sums / sums[1]
        assert torch.allclose(ratios, torch.tensor(colour, dtype=torch.float64), rtol=5e-3)
    # 0.5-degree dots on a 0.18-degree map: measured worst 0.031 px, mean 0.023 px, sun
    # 0.007 px (the blob's perspective stretch and bilinear smoothing); 0.05 px is a
    # twentieth of a pixel.
    assert max(errors) < 0.05, errors
    column, row = _gnomonic(*SUN, **VIEW)
    found_column, found_row, _ = _centroid(image, column, row)
    assert math.hypot(found_column - column, found_row - row) < 0.05


def test_the_sun_passes_unclamped_with_its_flux(dot_map):
    """Flux = sum of pixel values x pixel solid angle (cos^3 / f^2) = 30,000 x 2 pi sigma^2
    (the small-angle integral of the Gaussian); the dots add < 1e-4 of it."""
    image = render_view(dot_map, SIZE, SIZE, FOV, supersample=2, **VIEW)
    rays = camera_rays(SIZE, SIZE, FOV).mean(2)
    cos_theta = -rays[..., 2] / rays.norm(dim=-1)  # camera looks down -z before rotation
    flux = float((image[..., 0].double() * cos_theta.double() ** 3).sum() / FOCAL ** 2)
    assert flux == pytest.approx(SUN_PEAK * 2 * math.pi * SIGMA ** 2, rel=0.01)
    assert float(image.max()) > 0.5 * SUN_PEAK  # a 30,000 sun, not a clipped 1.0


@pytest.mark.parametrize("value", [0.18, 30000.0])
@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (180.0, 0.0, 0.0), (73.0, 90.0, 20.0),
                                  (-120.0, -89.0, 0.0)])
def test_a_constant_map_renders_the_same_constant(value, pose):
    flat = torch.full((64, 128, 3), value)
    image = render_view(flat, 40, 60, 120.0, *pose, supersample=3)
    assert image.shape == (40, 60, 3)
    # lerp of equal values is exact; the 9-sample mean rounds once (float32, 2 ulp)
    torch.testing.assert_close(image, torch.full_like(image, value), rtol=2.4e-7, atol=0)


def test_a_render_across_the_seam_equals_the_rolled_map_seen_head_on():
    generator = torch.Generator().manual_seed(3)
    texture = torch.exp2(12 * torch.rand(256, 512, 3, generator=generator) - 6)
    across_seam = render_view(texture, 96, 128, 90.0, yaw=180.0, pitch=10.0)
    head_on = render_view(torch.roll(texture, 256, dims=1), 96, 128, 90.0, yaw=0.0, pitch=10.0)
    # the two sample the same texels with the same weights (measured: bit-identical)
    error = ((across_seam - head_on).abs() / head_on).max()
    assert float(error) < 1e-4, float(error)


@pytest.mark.parametrize("pose", [(180.0, 0.0), (0.0, 90.0), (123.0, -90.0), (180.0, 80.0)])
def test_a_smooth_map_renders_smoothly_over_the_seam_and_the_poles(pose):
    """f(d) = 2 + d_x + 0.5 d_z + 0.3 d_y stored at texel centres; bilinear error is
    O(h^2) (h = 0.35 degrees: measured <= 1.1e-5) with correct wrapping, O(h) (~3e-3) if
    the seam or a pole were clamped instead."""
    directions = _texel_directions(512)
    weights = torch.tensor([1.0, 0.3, 0.5], dtype=torch.float64)
    smooth = (2 + directions @ weights)[..., None].expand(-1, -1, 3).float()
    image = render_view(smooth, 64, 64, 100.0, *pose)
    rays = camera_rays(64, 64, 100.0, *pose)[:, :, 0].double()
    truth = 2 + rays @ weights
    assert float((image[..., 0].double() - truth).abs().max()) < 1e-4


def test_pan_frames_move_by_the_speed_per_frame(dot_map):
    speed = 360.0 * 8 / (2 * MAP_HEIGHT)  # 8 map columns per frame: an exact column shift
    path = pan_tilt_path(4, speed, seed=7, max_heading=0.0)
    steps = [b - a for a, b in zip(path.yaw, path.yaw[1:], strict=False)]
    assert all(abs(abs(step) - speed) < 1e-9 for step in steps)
    assert len(set(path.pitch)) == 1 and set(path.roll) == {0.0}
    frames = [render_view(dot_map, 64, 96, 50.0, yaw, pitch)
              for yaw, pitch in zip(path.yaw, path.pitch, strict=True)]
    shift = -8 if steps[0] > 0 else 8
    for index in range(3):
        rolled = render_view(torch.roll(dot_map, shift * (index + 1), dims=1), 64, 96, 50.0,
                             path.yaw[0], path.pitch[0])
        torch.testing.assert_close(frames[index + 1], rolled, rtol=1e-4, atol=1e-4)


def test_tilting_paths_keep_speed_and_the_pitch_band():
    for seed in range(20):
        path = pan_tilt_path(30, 3.0, seed, max_pitch=20.0, max_heading=60.0)
        for index in range(29):
            dyaw = (path.yaw[index + 1] - path.yaw[index] + 180) % 360 - 180
            assert math.hypot(dyaw, path.pitch[index + 1] - path.pitch[index]) == \
                pytest.approx(3.0, abs=1e-9)
        assert max(abs(p) for p in path.pitch) <= 20.0 + 1e-9
    assert pan_tilt_path(5, 1.0, 4) == pan_tilt_path(5, 1.0, 4)
    assert pan_tilt_path(5, 1.0, 4).yaw != pan_tilt_path(5, 1.0, 5).yaw


def test_direction_and_map_coordinates_invert_each_other():
    u = torch.rand(1000, dtype=torch.float64)
    v = torch.rand(1000, dtype=torch.float64) * 0.98 + 0.01
    back_u, back_v = direction_to_equirect(equirect_to_direction(u, v))
    torch.testing.assert_close((back_u, back_v), (u, v), rtol=0, atol=1e-12)
    # the map's edges are behind the camera, its top row the zenith
    assert direction_to_equirect(_direction(180.0, 0.0))[0].item() == pytest.approx(1.0)
    assert direction_to_equirect(_direction(0.0, 90.0))[1].item() == pytest.approx(0.0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: render_view(torch.ones(10, 30, 3), 8, 8, 60.0), "not 2:1"),
    (lambda: render_view(torch.ones(10, 20, 3), 8, 8, 180.0), "between 0 and 180"),
    (lambda: render_view(torch.ones(10, 20, 3), 8, 8, 0.0), "between 0 and 180"),
    (lambda: render_view(torch.ones(10, 20, 3), 0, 8, 60.0), "height must be a positive"),
    (lambda: render_view(torch.ones(10, 20, 3), 8, -2, 60.0), "width must be a positive"),
    (lambda: render_view(torch.tensor([[[1.0, float("nan"), 1.0]] * 4] * 2), 8, 8, 60.0),
     "holds 8 NaN/Inf values; repair the map"),
    (lambda: render_view(torch.ones(10, 20), 8, 8, 60.0), r"tensor \[H, W, C\]"),
    (lambda: pan_tilt_path(0, 1.0, 0), "frame count must be a positive"),
    (lambda: pan_tilt_path(4, float("inf"), 0), "angular speed must be"),
    (lambda: pan_tilt_path(4, 1.0, -1), "seed must be"),
])
def test_bad_input_is_refused_naming_it_and_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()
