"""Training crops of equirectangular HDRIs: seam, latitude band, exposure, mirror, and the
eight real captured maps of Debian's blender-data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.training.data import collate
from comfyui_hdr.training.hdri_crops import BLENDER_HDRIS, HdriCrops, blender_hdris

HEIGHT = 64


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    """A 128x64 map whose pixel (row, column) holds (column, row, 1): every crop tells
    where it came from."""
    rows, columns = np.meshgrid(np.arange(HEIGHT), np.arange(2 * HEIGHT), indexing="ij")
    pixels = np.stack([columns, rows, np.ones_like(rows)], -1).astype(np.float32)
    path = tmp_path_factory.mktemp("maps") / "chart.exr"
    write_exr(path, pixels, pixel_type="float")
    return path


def _unexposed(item) -> np.ndarray:
    view = item["view"]
    return (item["hdr"][0] / 2.0**view["stops"]).numpy()


def test_crops_wrap_across_the_seam_and_report_their_view(chart):
    crops = HdriCrops([chart], count=64, crop=(8, 48), seed=3, mirror=False)
    straddling = 0
    for index in range(len(crops)):
        item = crops[index]
        top, yaw, height, width = item["crop"]
        pixels = _unexposed(item)
        expected_columns = (yaw + np.arange(width)) % (2 * HEIGHT)
        np.testing.assert_allclose(pixels[0, :, 0], expected_columns, rtol=1e-6)
        np.testing.assert_allclose(pixels[:, 0, 1], np.arange(top, top + height), rtol=1e-6)
        np.testing.assert_allclose(pixels[..., 2], 1.0, rtol=1e-6)
        straddling += yaw + width > 2 * HEIGHT
        assert item["prompt"] == "chart" and item["hdr"].shape == (1, 8, 48, 3)
    assert straddling > 0  # some crops did cross the seam


def test_crops_stay_within_the_latitude_band(chart):
    crops = HdriCrops([chart], count=200, crop=8, seed=1, latitude_limit=30.0)
    tops = {crops[index]["crop"][0] for index in range(len(crops))}
    # 30 degrees = 64 / 6 = 10.67 rows either side of the horizon (row 32): rows 22..42.
    assert min(tops) >= 22 and max(tops) + 8 <= 43
    assert len(tops) > 5


def test_exposure_shifts_are_exact_powers_of_two_within_the_range(chart):
    crops = HdriCrops([chart], count=100, crop=8, seed=2, exposure_stops=3.0, mirror=False)
    stops = [crops[index]["view"]["stops"] for index in range(len(crops))]
    assert -3.0 <= min(stops) < -2.0 and 2.0 < max(stops) <= 3.0
    item = crops[0]
    assert float(item["hdr"][0, 0, 0, 2]) == np.float32(2.0 ** item["view"]["stops"])


def test_mirrored_crops_read_right_to_left_and_the_draw_is_seeded(chart):
    crops = HdriCrops([chart], count=40, crop=(4, 16), seed=5)
    mirrored = [index for index in range(40) if crops[index]["view"]["mirrored"]]
    assert 5 < len(mirrored) < 35
    item = crops[mirrored[0]]
    columns = _unexposed(item)[0, :, 0]
    yaw = item["crop"][1]
    np.testing.assert_allclose(columns, ((yaw + np.arange(16)) % 128)[::-1], rtol=1e-6)
    again = HdriCrops([chart], count=40, crop=(4, 16), seed=5)
    assert torch.equal(again[mirrored[0]]["hdr"], item["hdr"])
    crops.set_epoch(1)
    assert not torch.equal(crops[mirrored[0]]["hdr"], item["hdr"])


def test_a_coarser_scale_is_the_box_filtered_map(chart):
    crops = HdriCrops([chart], count=30, crop=4, seed=4, scales=(2,), mirror=False,
                      latitude_limit=90.0)
    item = crops[0]
    top, yaw, _, _ = item["crop"]
    pixels = _unexposed(item)
    # A 2x2 box over (column, row) values averages to (2c + 0.5, 2r + 0.5).
    np.testing.assert_allclose(pixels[0, 0, :2], [(2 * yaw) % 128 + 0.5, 2 * top + 0.5],
                               rtol=1e-6)


def test_the_blender_hdris_give_real_highlights_and_keep_two_maps_out():
    training, held_out = blender_hdris()
    assert [path.stem for path in held_out] == ["courtyard", "sunrise"]
    assert [path.stem for path in training] == [
        "city", "forest", "interior", "night", "studio", "sunset"]
    crops = HdriCrops(training, count=24, crop=128, seed=0, scales=(1, 2),
                      exposure_stops=0.0)
    batch = collate([crops[index] for index in range(len(crops))])
    assert batch["hdr"].shape == (24, 1, 128, 128, 3)
    assert bool(torch.isfinite(batch["hdr"]).all())
    # Captured maps keep their few tiny negatives (down to -0.0039: sensor noise through
    # the camera's colour matrix); a crop passes them on unclamped.
    assert float(batch["hdr"].min()) >= -0.004
    # Real captured light: some crops hold values hundreds of times diffuse white (the
    # maps' peaks reach ~34,000), and every map is drawn.
    assert float(batch["hdr"].amax()) > 100.0
    assert {view["map"] for view in batch["view"]} == {path.stem for path in training}


def test_bad_maps_and_settings_are_refused_naming_the_fix(tmp_path, chart):
    wrong = tmp_path / "square.exr"
    write_exr(wrong, np.ones((32, 32, 3), np.float32), pixel_type="float")
    with pytest.raises(ValueError, match=r"square\.exr is 32x32; an equirectangular map"):
        HdriCrops([wrong], count=4, crop=8)
    with pytest.raises(ValueError, match=r"crop \(48, 48\) does not fit chart\.exr"):
        HdriCrops([chart], count=4, crop=48)
    with pytest.raises(ValueError, match="latitude_limit must be in"):
        HdriCrops([chart], count=4, crop=8, latitude_limit=0.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="install Debian's blender-data"):
        blender_hdris(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"held-out maps \['moon'\]"):
        blender_hdris(BLENDER_HDRIS, held_out=("moon",))
