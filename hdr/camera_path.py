"""Camera paths for HDRI clips: a pan that may tilt, at a constant angular speed.

LumiVid made its training clips by rotating a virtual camera inside Poly Haven HDRIs; a
path here is that rotation as per-frame ``(yaw, pitch, roll)`` in degrees, the angles of
:func:`~comfyui_hdr.hdr.equirect.render_view` (yaw is the longitude of the view's centre,
pitch its latitude). The camera starts at a random direction (yaw uniform over the full
turn, pitch uniform inside the allowed band) and moves along a straight line in
(yaw, pitch): ``speed`` degrees per frame along a heading drawn within ``max_heading`` of
horizontal, to the left or the right, with the band ``[-max_pitch, max_pitch]`` never left
(the heading is flattened, keeping the speed, when the clip would tilt further than the
band). Roll stays 0 (a level horizon).

References
----------
Seed 001 (LumiVid: Korem et al. 2026, arXiv:2604.11788), its training data: camera
rotations rendered through HDR environment maps.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraPath", "pan_tilt_path"]


@dataclass(frozen=True)
class CameraPath:
    """Per-frame camera angles in degrees, and the heading of the move (0 = pan right,
    90 = tilt up, 180 = pan left)."""

    yaw: tuple[float, ...]
    pitch: tuple[float, ...]
    roll: tuple[float, ...]
    heading: float


def _check(frames: int, speed: float, seed: int, max_pitch: float, max_heading: float) -> None:
    if not isinstance(frames, numbers.Integral) or isinstance(frames, bool) or frames <= 0:
        raise ValueError(f"frame count must be a positive whole number, got {frames!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if not (isinstance(speed, numbers.Real) and math.isfinite(speed) and speed >= 0):
        raise ValueError(f"angular speed must be a finite number of degrees per frame >= 0, "
                         f"got {speed!r}")
    if not (isinstance(max_pitch, numbers.Real) and 0.0 <= max_pitch < 90.0):
        raise ValueError(f"max_pitch must lie in [0, 90) degrees, got {max_pitch!r}")
    if not (isinstance(max_heading, numbers.Real) and 0.0 <= max_heading <= 90.0):
        raise ValueError(f"max_heading must lie in [0, 90] degrees, got {max_heading!r}")


def pan_tilt_path(frames: int, speed: float, seed: int, *, max_pitch: float = 30.0,
                  max_heading: float = 30.0) -> CameraPath:
    """A random pan-and-tilt path of ``frames`` frames moving ``speed`` degrees per frame.

    Parameters
    ----------
    frames
        Frame count (>= 1).
    speed
        Angular speed in degrees per frame, measured along the path in (yaw, pitch).
    seed
        Draws the start direction, the heading and left/right (numpy's PCG64).
    max_pitch
        The view's centre stays within this many degrees of the horizon.
    max_heading
        Largest angle of the move above or below horizontal (0: pure pans, 90: any tilt).

    >>> path = pan_tilt_path(3, 2.0, seed=1, max_heading=0.0)
    >>> [round(b - a, 6) for a, b in zip(path.yaw, path.yaw[1:])] in ([2.0, 2.0], [-2.0, -2.0])
    True
    """
    _check(frames, speed, seed, max_pitch, max_heading)
    rng = np.random.default_rng(seed)
    start_yaw = float(rng.uniform(-180.0, 180.0))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    angle = math.radians(float(rng.uniform(-max_heading, max_heading)))
    span = (frames - 1) * speed
    if span * abs(math.sin(angle)) > 2.0 * max_pitch:
        angle = math.copysign(math.asin(2.0 * max_pitch / span), angle)
    yaw_step, pitch_step = direction * speed * math.cos(angle), speed * math.sin(angle)
    tilt = (frames - 1) * pitch_step
    low, high = -max_pitch - min(0.0, tilt), max_pitch - max(0.0, tilt)
    start_pitch = float(rng.uniform(low, high)) if high > low else low
    yaw = tuple((start_yaw + yaw_step * index + 180.0) % 360.0 - 180.0 for index in range(frames))
    pitch = tuple(start_pitch + pitch_step * index for index in range(frames))
    heading = math.degrees(math.atan2(pitch_step, yaw_step)) if speed else 0.0
    return CameraPath(yaw, pitch, (0.0,) * frames, heading)
