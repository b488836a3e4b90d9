"""Equirectangular (latitude-longitude) environment maps seen through a pinhole camera.

Convention (right-handed, y up, the camera looking down -z as in OpenGL):

- a direction ``d = (x, y, z)`` has longitude ``lon = atan2(x, -z)`` (0 straight ahead,
  positive to the right, +-pi behind) and latitude ``lat = asin(y)`` (positive up);
- the map's column coordinate is ``u = lon / (2 pi) + 1/2`` and its row coordinate
  ``v = 1/2 - lat / pi``, both in [0, 1]: the centre of the map is straight ahead, its left
  and right edges meet behind the camera (the seam, longitude 180) and its top row is the
  zenith. Pixel ``(row i, column j)`` of an ``H x W`` map has its centre at
  ``u = (j + 1/2) / W``, ``v = (i + 1/2) / H``.

This is Blender Cycles' equirectangular mapping (``direction_to_equirectangular`` in
``intern/cycles/kernel/geom/...``: ``u = 1/2 - atan2(dir.y, dir.x) / (2 pi)``, z up, the
map's centre along +x) with Blender's (x, y, z) read as our (-z, -x, y), so HDRIs made for
Blender, such as Poly Haven's and ``blender-data``'s, render the same way round.

Sampling is bilinear between pixel centres: columns wrap around the seam, and a row
neighbour beyond a pole is the pixel on the other side of that pole (the same row, half the
width further round), so neither the seam nor the poles show a line. ``supersample``
averages ``n x n`` sample positions per output pixel (a box filter) for maps much sharper
than the render.

References
----------
P. Debevec, "Rendering Synthetic Objects into Real Scenes" (SIGGRAPH 1998), the
latitude-longitude light probe format; M. Pharr, W. Jakob, G. Humphreys, "Physically Based
Rendering", 4th ed., section 5.1.1 (the perspective camera: rays through the image plane at
distance ``(W / 2) / tan(fov / 2)`` pixels).
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["camera_rays", "direction_to_equirect", "equirect_to_direction", "render_view",
           "sample_equirect"]


def _check_map(environment: torch.Tensor) -> None:
    if not isinstance(environment, torch.Tensor) or environment.ndim != 3:
        raise ValueError(f"environment map must be a tensor [H, W, C], got "
                         f"{getattr(environment, 'shape', type(environment).__name__)}")
    height, width = environment.shape[:2]
    if width != 2 * height:
        raise ValueError(f"environment map is {width}x{height}, not 2:1; an equirectangular "
                         "map covers 360 x 180 degrees, so give a latitude-longitude map "
                         "whose width is twice its height (convert cube maps or crops first)")
    if not environment.is_floating_point():
        raise ValueError(f"environment map has dtype {environment.dtype}; give scene-linear "
                         "float pixels")
    bad = int((~torch.isfinite(environment)).sum())
    if bad:
        raise ValueError(f"environment map holds {bad} NaN/Inf values; repair the map (or "
                         "replace them with finite values) before rendering")


def _check_view(height: int, width: int, fov_degrees: float, supersample: int) -> None:
    for name, value in (("height", height), ("width", width), ("supersample", supersample)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive whole number of pixels, got {value!r}")
    if not (isinstance(fov_degrees, numbers.Real) and 0.0 < fov_degrees < 180.0):
        raise ValueError(f"field of view must lie strictly between 0 and 180 degrees (a "
                         f"pinhole camera cannot see a half-space), got {fov_degrees!r}")


def _rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    """``R_yaw @ R_pitch @ R_roll`` (float64, degrees in): camera -> world."""
    a, b, c = (math.radians(angle) for angle in (yaw, pitch, roll))
    turn = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0],
                         [math.sin(a), 0.0, math.cos(a)]], dtype=torch.float64)
    tilt = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)],
                         [0.0, math.sin(b), math.cos(b)]], dtype=torch.float64)
    lean = torch.tensor([[math.cos(c), math.sin(c), 0.0], [-math.sin(c), math.cos(c), 0.0],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)
    return turn @ tilt @ lean


def camera_rays(height: int, width: int, fov_degrees: float, yaw: float = 0.0,
                pitch: float = 0.0, roll: float = 0.0, *, supersample: int = 1,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Unit world directions ``[height, width, supersample**2, 3]`` (float32) of a pinhole camera.

    Parameters
    ----------
    height, width
        Image size in pixels (square pixels).
    fov_degrees
        Horizontal field of view, in (0, 180).
    yaw, pitch, roll
        Degrees: yaw turns the camera to the right (the view's longitude), pitch tilts it
        up (its latitude), roll leans its up vector to the right. The rotation is
        ``R_yaw R_pitch R_roll``, so yaw and pitch are the longitude and latitude of the
        view's centre.
    supersample
        ``n``: each pixel gets ``n x n`` rays on a regular grid inside it.

    Returns
    -------
    Directions on ``device`` (CPU by default), float32.

    >>> (camera_rays(1, 1, 90.0, yaw=90.0)[0, 0, 0].round(decimals=6) + 0.0).tolist()
    [1.0, 0.0, 0.0]
    """
    _check_view(height, width, fov_degrees, supersample)
    focal = (width / 2.0) / math.tan(math.radians(fov_degrees) / 2.0)
    offsets = (torch.arange(supersample, dtype=torch.float64, device=device) + 0.5) / supersample
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None] + offsets
    columns = torch.arange(width, dtype=torch.float64, device=device)[:, None] + offsets
    x = ((columns - width / 2.0) / focal).reshape(1, width, 1, supersample)
    y = ((height / 2.0 - rows) / focal).reshape(height, 1, supersample, 1)
    x, y = torch.broadcast_tensors(x, y)
    camera = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
    camera = camera / camera.norm(dim=-1, keepdim=True)
    world = camera @ _rotation(yaw, pitch, roll).to(camera.device).T
    return world.reshape(height, width, supersample * supersample, 3).float()


def direction_to_equirect(directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map coordinates ``(u, v)`` in [0, 1] of directions ``[..., 3]`` (need not be unit).

    >>> u, v = direction_to_equirect(torch.tensor([0.0, 0.0, -1.0]))
    >>> (float(u), float(v))
    (0.5, 0.5)
    """
    x, y, z = directions.unbind(-1)
    longitude = torch.atan2(x, -z)
    latitude = torch.atan2(y, torch.hypot(x, z))
    return longitude / (2.0 * math.pi) + 0.5, 0.5 - latitude / math.pi


def equirect_to_direction(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unit directions ``[..., 3]`` of map coordinates ``(u, v)`` (inverse of
    :func:`direction_to_equirect`).

    >>> right = equirect_to_direction(torch.tensor(0.75), torch.tensor(0.5))
    >>> (right.round(decimals=6) + 0.0).tolist()
    [1.0, 0.0, 0.0]
    """
    longitude = (u - 0.5) * (2.0 * math.pi)
    latitude = (0.5 - v) * math.pi
    return torch.stack([latitude.cos() * longitude.sin(), latitude.sin(),
                        -latitude.cos() * longitude.cos()], dim=-1)


def sample_equirect(environment: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear samples ``[..., C]`` of an equirectangular map ``[H, W, C]`` at ``(u, v)``.

    Columns wrap around the seam; a row beyond a pole continues on the far side of it
    (same row, longitude + 180 degrees). Computed in float32 (float64 stays float64) and
    returned in the map's dtype on its device; values are never clamped.

    >>> grey = torch.full((4, 8, 3), 0.18)
    >>> sample_equirect(grey, torch.tensor([0.0, 0.999]), torch.tensor([0.0, 1.0]))[:, 0].tolist()
    [0.18000000715255737, 0.18000000715255737]
    """
    _check_map(environment)
    return _sample(environment, u, v).to(environment.dtype)


def _sample(environment: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:func:`sample_equirect` in float32 (float64 for a float64 map), unchecked."""
    height, width, channels = environment.shape
    compute = torch.float64 if environment.dtype == torch.float64 else torch.float32
    flat = environment.to(compute).reshape(height * width, channels)
    x = u.to(device=environment.device, dtype=torch.float64) * width - 0.5
    y = v.to(device=environment.device, dtype=torch.float64) * height - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0).to(compute)[..., None], (y - y0).to(compute)[..., None]
    x0, y0 = x0.long(), y0.long()

    def row(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row within the map and the column shift (half a turn) for rows past a pole."""
        above, below = index < 0, index >= height
        inside = torch.where(above, -1 - index, torch.where(below, 2 * height - 1 - index, index))
        return inside, torch.where(above | below, width // 2, 0)

    def texel(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        inside, shift = row(rows)
        return flat[inside * width + (columns + shift) % width]

    top = torch.lerp(texel(y0, x0), texel(y0, x0 + 1), fx)
    bottom = torch.lerp(texel(y0 + 1, x0), texel(y0 + 1, x0 + 1), fx)
    return torch.lerp(top, bottom, fy)


def render_view(environment: torch.Tensor, height: int, width: int, fov_degrees: float,
                yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, *,
                supersample: int = 1) -> torch.Tensor:
    """Render ``[height, width, C]`` of an equirectangular map through a pinhole camera.

    See :func:`camera_rays` for the angles (degrees) and :func:`sample_equirect` for the
    sampling. Scene-linear values pass unchanged in scale (a constant map renders as the
    same constant; nothing is clamped). The result has the map's dtype and device.

    Raises ``ValueError`` for a map that is not 2:1 or holds NaN/Inf, a field of view
    outside (0, 180) or a size <= 0.

    >>> sky = torch.full((8, 16, 3), 30000.0)
    >>> float(render_view(sky, 4, 6, 90.0, yaw=180.0).max())
    30000.0
    """
    _check_map(environment)
    rays = camera_rays(height, width, fov_degrees, yaw, pitch, roll, supersample=supersample,
                       device=environment.device)
    u, v = direction_to_equirect(rays.double())
    return _sample(environment, u, v).mean(dim=2).to(environment.dtype)
