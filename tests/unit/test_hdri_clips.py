"""``render-hdri-clips`` on a real HDRI (Debian blender-data's CC0 forest.exr, 1024x512),
read back by train-lora's dataset reader; overwrite rules and bad input through the CLI.

Oracles: bilinear sampling is a convex combination of texels, so no rendered value exceeds
the map's peak, and a view whose centre ray hits the brightest texel's centre returns that
texel's value; a frame's mean equals the map's mean over the region the frame covers,
weighted by solid angle and by the pinhole's pixel density (``1 / cos^3`` of the angle off
the optical axis: image-plane area per steradian, Pharr et al., PBR 4th ed. 5.1.1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.equirect import equirect_to_direction, render_view
from comfyui_hdr.hdr.exr import read_exr, write_exr
from comfyui_hdr.hdr.radiance import write_hdr
from comfyui_hdr.training.__main__ import main as training_main
from comfyui_hdr.training.data import ExrFolderDataset
from comfyui_hdr.training.hdri_clips import ClipSettings, render_clips

FOREST = Path("/usr/share/blender/datafiles/studiolights/world/forest.exr")
CLIP_FLAGS = ["--clips", "2", "--frames", "3", "--width", "96", "--height", "64",
              "--fov", "100", "--speed", "2", "--seed", "5", "--supersample", "3"]


@pytest.fixture(scope="module")
def forest() -> torch.Tensor:
    return torch.from_numpy(read_exr(FOREST).pixels[..., :3].copy())


@pytest.fixture(scope="module")
def forest_clips(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("clips")
    assert training_main(["render-hdri-clips", str(FOREST), "--output", str(output),
                          *CLIP_FLAGS]) == 0
    return output


def _covered_mean(environment: torch.Tensor, yaw: float, pitch: float, roll: float,
                  fov: float, height: int, width: int) -> float:
    """Mean (over pixels and channels) of the texels inside the frustum, weighted by solid
    angle (cos latitude) and by the pinhole's density 1 / cos^3 (off-axis angle)."""
    rows, columns = environment.shape[:2]
    v = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    u = (torch.arange(columns, dtype=torch.float64) + 0.5) / columns
    world = equirect_to_direction(u[None, :].expand(rows, -1), v[:, None].expand(-1, columns))
    a, b, c = (math.radians(angle) for angle in (yaw, pitch, roll))
    # camera axes in the world: right, up and backward (the module's R_yaw R_pitch R_roll)
    forward = torch.tensor([math.cos(b) * math.sin(a), math.sin(b), -math.cos(b) * math.cos(a)],
                           dtype=torch.float64)
    level_right = torch.tensor([math.cos(a), 0.0, math.sin(a)], dtype=torch.float64)
    level_up = torch.linalg.cross(level_right, forward)
    right = math.cos(c) * level_right - math.sin(c) * level_up
    up = math.sin(c) * level_right + math.cos(c) * level_up
    depth = world @ forward
    focal = (width / 2) / math.tan(math.radians(fov) / 2)
    x, y = focal * (world @ right) / depth, focal * (world @ up) / depth
    inside = (depth > 0) & (x.abs() < width / 2) & (y.abs() < height / 2)
    weight = torch.cos((0.5 - v) * math.pi)[:, None] / depth.clamp(min=1e-9) ** 3 * inside
    return float((environment.double() * weight[..., None]).sum() / weight.sum() / 3)


def test_forest_frames_have_the_mean_and_peak_of_the_map_region_they_show(forest_clips, forest):
    means = []
    for frame_path in sorted(forest_clips.glob("forest_*/frame_*.exr")):
        frame = read_exr(frame_path)
        angles = json.loads(frame.header["cameraYawPitchRollDegrees"])
        expected = _covered_mean(forest, *angles, 100.0, 64, 96)
        means.append((float(frame.pixels.mean()), expected))
        # bilinear weights are convex: nothing brighter than the map's peak
        assert frame.pixels.max() <= float(forest.max())
    assert len(means) == 6
    # 100 degrees over 96 pixels is ~3 texels of the 1024x512 map per pixel: with 3 x 3
    # samples per pixel the two means are two fine quadratures of one integral, measured
    # within 0.41% (with 1 sample, the sun aliases: up to 8.5% off); allowed 1%
    for found, expected in means:
        assert found == pytest.approx(expected, rel=0.01)


def test_a_view_centred_on_the_brightest_texel_returns_its_value_unclamped(forest):
    row, column = np.unravel_index(int(forest.sum(-1).argmax()), forest.shape[:2])
    yaw = ((column + 0.5) / forest.shape[1] - 0.5) * 360.0
    pitch = (0.5 - (row + 0.5) / forest.shape[0]) * 180.0
    view = render_view(forest, 33, 33, 5.0, yaw, pitch)  # odd size: a ray on the axis
    peak = forest[row, column]
    assert float(peak.max()) > 1000.0  # forest.exr's sun: 1010.5, far above diffuse white
    torch.testing.assert_close(view[16, 16], peak, rtol=1e-3, atol=0)


def test_train_lora_reads_each_rendered_folder_as_one_clip(forest_clips):
    dataset = ExrFolderDataset(forest_clips, frames_per_clip=3, crop=None)
    assert len(dataset) == 2
    for index, folder in enumerate(("forest_000", "forest_001")):
        item = dataset[index]
        assert item["hdr"].shape == (3, 64, 96, 3)
        assert [path.parent.name for path in item["paths"]] == [folder] * 3
        assert item["prompt"] == "[Overexposed: sky and lights, forest]; [Underexposed: " \
                                 "shadows, forest]"
        written = read_exr(forest_clips / folder / "frame_00002.exr").pixels
        torch.testing.assert_close(item["hdr"][1], torch.from_numpy(written), rtol=0, atol=0)


def test_existing_clips_are_kept_unless_overwrite_which_drops_stale_frames(tmp_path, capsys):
    settings = ClipSettings(width=16, height=8, frames=4, clips=1)
    constant = tmp_path / "grey.exr"
    write_exr(constant, np.full((8, 16, 3), 0.25, np.float32))
    output = tmp_path / "out"
    render_clips(constant, output, settings)
    before = (output / "grey_000" / "frame_00001.exr").read_bytes()
    assert training_main(["render-hdri-clips", str(constant), "--output", str(output),
                          "--width", "16", "--height", "8", "--frames", "2",
                          "--clips", "1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (output / "grey_000" / "frame_00001.exr").read_bytes() == before
    assert len(list((output / "grey_000").glob("frame_*.exr"))) == 4
    render_clips(constant, output, ClipSettings(width=16, height=8, frames=2, clips=1),
                 caption="[Overexposed: a grey sky]", overwrite=True)
    assert sorted(p.name for p in (output / "grey_000").iterdir()) == [
        "caption.txt", "frame_00001.exr", "frame_00002.exr"]
    assert (output / "grey_000" / "caption.txt").read_text() == "[Overexposed: a grey sky]\n"
    assert np.all(read_exr(output / "grey_000" / "frame_00002.exr").pixels == 0.25)


def test_a_radiance_map_renders_its_values_unclamped(tmp_path):
    """3072 = 192 x 2^4 is exact in RGBE (8-bit mantissa, shared exponent), and a constant
    map renders as the same constant (bilinear weights sum to one; lerp of equal values is
    exact): every pixel of every frame is 3072.0."""
    write_hdr(tmp_path / "bright_sky.hdr", np.full((8, 16, 3), 3072.0, np.float32))
    folders = render_clips(tmp_path / "bright_sky.hdr", tmp_path / "out",
                           ClipSettings(width=8, height=6, fov=120.0, frames=2, clips=3,
                                        max_pitch=80.0, pixel_type="half"))
    frames = [read_exr(path).pixels for folder in folders for path in folder.glob("frame_*")]
    assert len(frames) == 6 and all(np.all(frame == 3072.0) for frame in frames)


@pytest.mark.parametrize(("flags", "message"), [
    (["--fov", "180"], "--fov must lie strictly between 0 and 180"),
    (["--fov", "0"], "--fov must lie strictly between 0 and 180"),
    (["--width", "0"], "--width must be >= 1"),
    (["--height", "-4"], "--height must be >= 1"),
    (["--frames", "0"], "--frames must be >= 1"),
    (["--caption", "a forest"], "--caption: caption 'a forest' is not"),
])
def test_bad_flags_are_refused_naming_the_flag_and_nothing_is_written(flags, message,
                                                                      tmp_path, capsys):
    assert training_main(["render-hdri-clips", str(FOREST), "--output", str(tmp_path / "out"),
                          *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("pixels", "message"), [
    (np.ones((10, 30, 3), np.float32), "is 30x10, not 2:1"),
    (np.where(np.arange(3) == 1, np.inf, np.ones((8, 16, 3), np.float32)).astype(np.float32),
     "holds 128 NaN/Inf values; repair the map"),
])
def test_bad_maps_are_refused_naming_the_file_and_the_fix(pixels, message, tmp_path, capsys):
    path = tmp_path / "bad.exr"
    write_exr(path, pixels, pixel_type="float", check_finite=False)
    assert training_main(["render-hdri-clips", str(path), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and message in error
    assert not (tmp_path / "out").exists()
