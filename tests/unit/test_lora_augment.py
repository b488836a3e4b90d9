"""train-lora's augmentations: a clip at every start frame (``--all-starts``) and mirrored
copies (``--flip``), on a real EXR sequence, with the held-out clips kept apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.training.data import ExrFolderDataset, ProceduralScenes
from comfyui_hdr.training.lora_augment import AugmentedClips, mirrored

FRAMES, CLIP = 10, 3


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """Frame n: value n everywhere but a bright column at x = n, so a frame's number and
    its mirroring can both be read from the pixels."""
    folder = tmp_path_factory.mktemp("shot")
    for number in range(FRAMES):
        pixels = np.full((4, 12, 3), float(number), np.float32)
        pixels[:, number, :] = 1000.0
        write_exr(folder / f"shot.{number:04d}.exr", pixels, pixel_type="float")
    return folder


def _make(folder):
    return lambda stride: ExrFolderDataset(folder, frames_per_clip=CLIP, stride=stride)


def _numbers(item) -> list[int]:
    return [int(frame[0, -1, 0] if frame[0, -1, 0] < 1000 else frame[0, 0, 0])
            for frame in item["hdr"]]


def test_plain_items_are_the_datasets_own_and_hold_out_its_last_clips(sequence):
    plain = ExrFolderDataset(sequence, frames_per_clip=CLIP)
    items = AugmentedClips(_make(sequence), holdout=1)
    assert len(items) == len(plain) == 3  # starts 0, 3, 6 (frame 9 is left over)
    for index in range(3):
        assert torch.equal(items[index]["hdr"], plain[index]["hdr"])
        assert items.origin(index)[1:] == (index, False)
    assert _numbers(items[2]) == [6, 7, 8]


def test_all_starts_trains_every_start_clear_of_the_held_out_frames(sequence):
    items = AugmentedClips(_make(sequence), holdout=1, all_starts=True)
    starts = [_numbers(items[index])[0] for index in range(len(items))]
    # Held out: frames 6-8. Every clip of 3 frames that touches none of them: starts 0-3.
    # (Start 7, frames 7-9, shares frames with the held-out clip, so it is left out too.)
    assert starts == [0, 1, 2, 3, 6]
    assert [_numbers(items[index]) for index in range(4)] == [
        [s, s + 1, s + 2] for s in range(4)]


def test_flip_adds_a_mirrored_copy_of_every_training_item_only(sequence):
    items = AugmentedClips(_make(sequence), holdout=1, all_starts=True, flip=True)
    assert len(items) == 4 * 2 + 1
    for index in range(4):
        original, copy = items[index], items[4 + index]
        assert torch.equal(copy["hdr"], original["hdr"].flip(-2))
        assert copy["flipped"] and "flipped" not in original
        # The bright column of frame n moves from x = n to x = 11 - n.
        column = int(copy["hdr"][0, 0, :, 0].argmax())
        assert column == 11 - _numbers(original)[0]
    assert "flipped" not in items[len(items) - 1]  # the held-out clip is never mirrored


def test_mirroring_flips_the_sdr_reference_with_the_target():
    item = {"hdr": torch.arange(6.0).reshape(1, 1, 2, 3),
            "sdr_reference": torch.arange(6.0).reshape(1, 1, 2, 3) / 10}
    flipped = mirrored(item)
    assert torch.equal(flipped["hdr"][0, 0, :, 0], torch.tensor([3.0, 0.0]))
    assert torch.equal(flipped["sdr_reference"], item["sdr_reference"].flip(-2))
    assert torch.equal(item["hdr"][0, 0, :, 0], torch.tensor([0.0, 3.0]))  # input untouched


def test_bad_augmentation_requests_are_refused_naming_the_flag(sequence):
    with pytest.raises(ValueError, match="--all-starts takes every start frame of EXR"):
        AugmentedClips(lambda stride: ProceduralScenes(4, 16), holdout=1, all_starts=True)
    with pytest.raises(ValueError, match="--holdout 3 leaves none to train on"):
        AugmentedClips(_make(sequence), holdout=3)
