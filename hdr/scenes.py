"""Procedural HDR scenes: a sky with a sun, a ground plane and spheres, in scene-linear light.

Tests, benchmarks and the demo need HDR images with real highlights (a sun at 1e3 to 1e5
times diffuse white, emissive objects, specular glints) without downloading anything.
:func:`hdr_scene` renders one from a seed: the layout is drawn with Python's
:class:`random.Random` (stable across platforms and library versions) and shaded with a
few vectorised torch operations, so a 64x64 scene takes about a millisecond.

The shading is deliberately simple (orthographic, one sun and a uniform sky ambient,
Lambert and normalised Blinn-Phong, soft contact shadows), but every value is
scene-linear Rec.709 with 1.0 = diffuse white: a white Lambertian surface facing the sun
lands near ``sun_irradiance``, the sky sits between 0.2 and 3, and nothing is clamped.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

__all__ = ["SCENE_RANGES", "hdr_scene", "hdr_scenes"]


@dataclass(frozen=True)
class _SceneRanges:
    """The ranges a scene's parameters are drawn from (scene-linear, 1.0 = diffuse white)."""

    # Issue 6: "a sun disk at 1e3-1e5", drawn log-uniformly.
    sun_radiance: tuple[float, float] = (1e3, 1e5)
    # Sun disk radius in image heights (0.27 degrees would be far smaller than a pixel).
    sun_radius: tuple[float, float] = (0.012, 0.03)
    # Sun irradiance on a surface facing it: a white Lambertian card reads 1.5 to 4.
    sun_irradiance: tuple[float, float] = (1.5, 4.0)
    # Sky radiance at the zenith and at the horizon.
    sky_zenith: tuple[float, float] = (0.2, 1.0)
    sky_horizon: tuple[float, float] = (0.6, 2.0)
    horizon_height: tuple[float, float] = (0.35, 0.6)
    sphere_count: tuple[int, int] = (3, 7)
    sphere_radius: tuple[float, float] = (0.05, 0.14)
    albedo: tuple[float, float] = (0.03, 0.9)
    # Emissive spheres (lamps, screens, fire): 2 to 500 times diffuse white.
    emission: tuple[float, float] = (2.0, 500.0)
    # Blinn-Phong exponent of glossy spheres, drawn log-uniformly.
    shininess: tuple[float, float] = (40.0, 2000.0)
    specular: tuple[float, float] = (0.04, 1.0)


SCENE_RANGES = _SceneRanges()

_SUN_TINT = (1.0, 0.93, 0.82)
_SKY_ZENITH_TINT = (0.32, 0.5, 1.0)
_SKY_HORIZON_TINT = (1.0, 0.96, 0.92)
_SPHERE_KINDS = ("lambertian", "glossy", "emissive")


def _log_uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))


def _colour(rng: random.Random, bounds: tuple[float, float]) -> torch.Tensor:
    return torch.tensor([rng.uniform(*bounds) for _ in range(3)], dtype=torch.float32)


def _coverage(distance: torch.Tensor, radius: float, height: int) -> torch.Tensor:
    """Anti-aliased disk coverage: 1 inside, 0 outside, a one-pixel ramp at the edge."""
    return ((radius - distance) * height + 0.5).clamp(0.0, 1.0)


def _normalise(vector: tuple[float, float, float]) -> torch.Tensor:
    direction = torch.tensor(vector, dtype=torch.float32)
    return direction / direction.norm()


def hdr_scene(seed: int, height: int = 64, width: int | None = None) -> torch.Tensor:
    """Render the procedural HDR scene number ``seed`` in scene-linear Rec.709.

    Parameters
    ----------
    seed
        Any non-negative integer; the same seed gives the same scene at any size.
    height, width
        Size in pixels (``width`` defaults to ``height``). Positions are measured in image
        heights, so a wider frame shows more of the same scene.

    Returns
    -------
    ``[height, width, 3]`` float32 tensor, scene-linear (1.0 = diffuse white), unclamped:
    the sun disk peaks between 1e3 and 1e5, emissive spheres between 2 and 500.

    References
    ----------
    Issue 6 (the HDR model stack), item 3: sky gradient, sun disk at 1e3-1e5, emissive
    spheres, Lambertian and glossy surfaces, deterministic by seed.

    >>> scene = hdr_scene(7, 32, 48)
    >>> tuple(scene.shape), scene.dtype, bool(scene.max() > 1e3)
    ((32, 48, 3), torch.float32, True)
    """
    width = height if width is None else width
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be at least 1 pixel, got {height}x{width}")
    rng = random.Random(seed)
    ranges = SCENE_RANGES
    aspect = width / height
    y = ((torch.arange(height, dtype=torch.float32) + 0.5) / height)[:, None]
    x = ((torch.arange(width, dtype=torch.float32) + 0.5) / height)[None, :]
    y, x = torch.broadcast_tensors(y, x)

    horizon = rng.uniform(*ranges.horizon_height)
    sun_x, sun_y = rng.uniform(0.1, 0.9) * aspect, rng.uniform(0.08, 0.9) * horizon
    sun_radius = rng.uniform(*ranges.sun_radius)
    sun_radiance = _log_uniform(rng, ranges.sun_radiance)
    irradiance = rng.uniform(*ranges.sun_irradiance)
    sun_tint = torch.tensor(_SUN_TINT)
    zenith = torch.tensor(_SKY_ZENITH_TINT) * rng.uniform(*ranges.sky_zenith)
    horizon_sky = torch.tensor(_SKY_HORIZON_TINT) * rng.uniform(*ranges.sky_horizon)
    ambient = 0.5 * (zenith + horizon_sky)
    # Light direction (x right, y up, z towards the camera) from the sun's place in frame.
    light = _normalise((2 * (sun_x - aspect / 2), 3 * (horizon - sun_y) + 0.2, 0.7))

    # Sky: zenith-to-horizon gradient, the sun disk and its aureole.
    elevation = ((horizon - y) / horizon).clamp(0.0, 1.0)[..., None]
    sky = horizon_sky + (zenith - horizon_sky) * elevation.sqrt()
    sun_distance = torch.hypot(x - sun_x, y - sun_y)
    aureole = 4.0 * torch.exp(-sun_distance / (3 * sun_radius))
    disk = _coverage(sun_distance, sun_radius, height) * sun_radiance
    sky = sky + sun_tint * (disk + aureole)[..., None]

    # Ground: a perspective checker, lit by the sun and the sky, fading into haze.
    depth = 1.0 / (y - horizon).clamp_min(1e-3)
    checker = (torch.floor((x - aspect / 2) * depth * 0.6) + torch.floor(depth * 0.6)) % 2
    contrast = torch.exp(-depth / 40.0)
    albedo_a, albedo_b = _colour(rng, ranges.albedo), _colour(rng, ranges.albedo)
    mean_albedo = 0.5 * (albedo_a + albedo_b)
    albedo = mean_albedo + ((albedo_a - mean_albedo) * (1 - 2 * checker)[..., None]
                            * contrast[..., None])
    shadow = torch.ones_like(y)

    spheres = []
    for _ in range(rng.randint(*ranges.sphere_count)):
        centre_y = rng.uniform(horizon + 0.05, 1.0)
        scale = (centre_y - horizon + 0.15) * 1.6
        radius = rng.uniform(*ranges.sphere_radius) * scale
        spheres.append((centre_y, rng.uniform(0.0, aspect), radius, rng.choice(_SPHERE_KINDS),
                        _colour(rng, ranges.albedo), rng.uniform(*ranges.specular),
                        _log_uniform(rng, ranges.shininess), _log_uniform(rng, ranges.emission)))
        # Soft contact shadow on the ground, pushed away from the sun.
        offset_x = -light[0].item() * radius
        footprint = (((x - spheres[-1][1] - offset_x) / (1.6 * radius)) ** 2
                     + ((y - centre_y - 0.85 * radius) / (0.35 * radius)) ** 2)
        shadow = shadow * (1 - 0.8 * torch.exp(-footprint))
    ground_light = irradiance * max(light[1].item(), 0.0) * shadow[..., None] + ambient
    ground = albedo * ground_light
    haze = torch.exp(-(y - horizon).clamp_min(0) * 12.0)[..., None]
    ground = ground + (horizon_sky - ground) * haze
    image = torch.where((y < horizon)[..., None], sky, ground)

    # Spheres, far (near the horizon) to near, each over what is behind it.
    half_vector = light + torch.tensor([0.0, 0.0, 1.0])
    half_vector = half_vector / half_vector.norm()
    for centre_y, centre_x, radius, kind, colour, specular, shininess, emission in sorted(
            spheres, key=lambda sphere: sphere[0]):
        normal_x, normal_y = (x - centre_x) / radius, (centre_y - y) / radius
        # Outside the disk the normal is pinned to the silhouette, keeping every lobe finite.
        outside = torch.hypot(normal_x, normal_y).clamp_min(1.0)
        normal_x, normal_y = normal_x / outside, normal_y / outside
        normal_z = (1 - normal_x**2 - normal_y**2).clamp_min(0.0).sqrt()
        normal = torch.stack([normal_x, normal_y, normal_z], dim=-1)
        cover = _coverage(torch.hypot(x - centre_x, y - centre_y), radius, height)[..., None]
        if kind == "emissive":
            radiance = colour / colour.max() * emission * normal_z[..., None].pow(0.3)
        else:
            lambert = (normal * light).sum(-1).clamp_min(0.0)[..., None]
            sky_light = ambient * (0.6 + 0.4 * normal_y[..., None].clamp(-1.0, 1.0))
            radiance = colour * (irradiance * lambert + sky_light)
            if kind == "glossy":
                # Normalised Blinn-Phong: (n + 8) / (8 pi) (N.H)^n keeps the lobe's energy.
                lobe = (normal * half_vector).sum(-1).clamp_min(0.0).pow(shininess)[..., None]
                radiance = radiance + (specular * irradiance * (shininess + 8) / (8 * math.pi)
                                       * lobe * lambert.gt(0) * sun_tint)
        image = image + (radiance - image) * cover
    return image.to(torch.float32).contiguous()


def hdr_scenes(seeds, height: int = 64, width: int | None = None) -> torch.Tensor:
    """Render the scenes ``seeds`` as one batch ``[N, height, width, 3]`` (see :func:`hdr_scene`).

    >>> tuple(hdr_scenes(range(3), 16).shape)
    (3, 16, 16, 3)
    """
    return torch.stack([hdr_scene(int(seed), height, width) for seed in seeds])
