"""The procedural HDR scene generator: deterministic, any size, real highlights, fast."""

import math

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.exposure import hdr_stats
from comfyui_hdr.hdr.scenes import SCENE_RANGES, hdr_scene, hdr_scenes


def test_the_same_seed_renders_the_same_scene_and_other_seeds_differ():
    assert torch.equal(hdr_scene(11, 48, 40), hdr_scene(11, 48, 40))
    assert not torch.equal(hdr_scene(11, 48, 40), hdr_scene(12, 48, 40))


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 64), (90, 160)])
def test_any_size_gives_finite_float32_scene_linear_rgb(size):
    scene = hdr_scene(4, *size)
    assert scene.shape == (*size, 3) and scene.dtype == torch.float32
    assert torch.isfinite(scene).all() and scene.min() >= 0


def test_the_sun_disk_peaks_between_1e3_and_1e5_times_diffuse_white():
    low, high = SCENE_RANGES.sun_radiance
    peaks = np.array([hdr_scene(seed, 128).max().item() for seed in range(12)])
    # The disk is at least 3 pixels across at 128 px, so its centre is fully covered;
    # the aureole and the sky add at most 4 + 2 on top.
    assert np.all(peaks >= low) and np.all(peaks <= high + 6)
    # Drawn log-uniformly: twelve scenes spread over more than one decade.
    assert math.log10(peaks.max() / peaks.min()) > 1


def test_scenes_have_hdr_headroom_and_a_dark_end():
    for seed in range(6):
        stats = hdr_stats(hdr_scene(seed, 96).numpy())
        # The sun's luminance is at least 1e3 x 0.937 (its tint's Rec.709 luminance):
        # 9.87 stops over diffuse white.
        assert stats.peak_stops >= 9.8, seed
        assert stats.share_above_diffuse_white > 0, seed
    scene = hdr_scene(0, 96)
    assert (scene > 1.0).any() and (scene < 0.5).any()


def test_hdr_scenes_stacks_the_same_scenes_as_hdr_scene():
    batch = hdr_scenes([3, 5], 24, 40)
    assert batch.shape == (2, 24, 40, 3)
    assert torch.equal(batch[1], hdr_scene(5, 24, 40))


@pytest.mark.parametrize("arguments", [(-1, 8), (1.5, 8), (0, 0), (0, 8, -2)])
def test_bad_seeds_and_sizes_are_refused(arguments):
    with pytest.raises(ValueError, match="seed must be|at least 1 pixel"):
        hdr_scene(*arguments)
