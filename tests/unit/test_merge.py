"""Exposure-bracket merge: brackets synthesised from a known HDR image with
colour-science's sRGB encoding, merged back, and integer-translation alignment."""

import colour
import numpy as np
import pytest
import torch
from _devices import OnDevice
from scipy.ndimage import gaussian_filter

import comfyui_hdr.hdr.merge as merge_module
from comfyui_hdr.hdr.merge import estimate_translation, merge_brackets

EVS = (-2.0, 0.0, 2.0)


@pytest.fixture(name="mg")
def _mg_on_device(device):
    """The library with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(merge_module, device, numpy_results=('merge_brackets',))


def known_hdr(size=64):
    """Scene-linear texture from 2**-9 to 2**4 with edges and smooth areas."""
    rng = np.random.default_rng(1997)
    stops = gaussian_filter(rng.normal(size=(size, size)), 2.0)
    stops = (stops - stops.min()) / np.ptp(stops) * 13 - 9
    tint = rng.uniform(0.7, 1.0, (1, 1, 3))
    return np.exp2(stops)[..., None] * tint


def brackets_of(hdr, evs=EVS):
    """What a camera with an sRGB response records: expose, clip, encode, 8-bit quantise."""
    frames = []
    for ev in evs:
        linear = np.clip(hdr * 2.0**ev, 0.0, 1.0)
        frames.append(np.round(colour.cctf_encoding(linear, "sRGB") * 255) / 255)
    return frames


def covered(hdr):
    """Scene values some bracket records between the crush and clip codes: the +2 EV frame
    sees down to sRGB code 0.02 (linear 0.00155 / 4) and the -2 EV frame up to code 0.98
    (linear 0.955 * 4); 2**-8 .. 2**1.8 keeps a margin inside both."""
    return (hdr >= 2.0**-8) & (hdr <= 2.0**1.8)


@pytest.mark.parametrize("weighting", ["hat", "triangle"])
def test_merge_recovers_the_known_hdr_within_2_percent_median(mg, weighting):
    hdr = known_hdr()
    merged = mg.merge_brackets(brackets_of(hdr), EVS, weighting=weighting)
    error = np.abs(merged - hdr) / hdr
    # 8-bit sRGB quantisation: a code step is 0.5-4 % of the linear value over the codes
    # that get weight; averaging brackets brings the median well under 2 %.
    assert np.median(error[covered(hdr)]) <= 0.02
    assert merged.shape == hdr.shape and merged.dtype == np.float64


def test_batch_tensor_and_uint8_brackets_give_the_list_result():
    hdr = known_hdr(32)
    frames = brackets_of(hdr)
    reference = merge_brackets(frames, EVS)
    batch = merge_brackets(torch.tensor(np.stack(frames)), EVS)
    assert isinstance(batch, torch.Tensor)
    np.testing.assert_allclose(batch.numpy(), reference, rtol=1e-12)
    codes = [np.round(frame * 255).astype(np.uint8) for frame in frames]
    np.testing.assert_allclose(merge_brackets(codes, EVS), reference, rtol=1e-12)


def test_scale_is_relative_to_the_middle_exposure(mg):
    hdr = known_hdr(32)
    shifted = mg.merge_brackets(brackets_of(hdr, (0.0, 2.0, 4.0)), (0.0, 2.0, 4.0))
    # Frames at 0/+2/+4 EV put the middle (+2) frame at scale 1: the result is hdr * 4.
    mask = (hdr >= 2.0**-10) & (hdr <= 2.0**-0.2)
    error = np.abs(shifted - hdr * 4) / (hdr * 4)
    assert np.median(error[mask]) <= 0.02


@pytest.mark.parametrize("method", ["phase", "search"])
def test_translation_between_exposures_is_recovered(mg, method):
    hdr = known_hdr()
    dark, bright = brackets_of(hdr, (-1.0, 1.0))
    moved = np.roll(bright, (3, -5), (0, 1))
    assert mg.estimate_translation(dark, moved, method=method, radius=8) == (3, -5)


def test_aligned_merge_recovers_the_hdr_of_shifted_brackets(mg):
    hdr = known_hdr()
    frames = brackets_of(hdr)
    frames[0] = np.roll(frames[0], (2, 4), (0, 1))
    frames[2] = np.roll(frames[2], (-3, 1), (0, 1))
    merged = mg.merge_brackets(frames, EVS, align="phase", radius=6)
    inner = (slice(6, -6), slice(6, -6))
    error = np.abs(merged - hdr) / hdr
    # Same 2 % budget as the unshifted merge; the wrapped borders are left out.
    assert np.median(error[inner][covered(hdr)[inner]]) <= 0.02


@pytest.mark.parametrize(("call", "name"), [
    (lambda frames: merge_brackets(frames, (0.0, 1.0)), "evs"),
    (lambda frames: merge_brackets([frames[0], frames[1][:8]], (0.0, 1.0)), "brackets"),
    (lambda frames: merge_brackets([np.ones((4, 4, 4))] * 2, (0.0, 1.0)), "brackets"),
    (lambda frames: merge_brackets(frames, EVS, decode="log"), "decode"),
    (lambda frames: merge_brackets(frames, EVS, weighting="box"), "weighting"),
    (lambda frames: merge_brackets(frames, EVS, clip=0.1, crush=0.2), "crush"),
    (lambda frames: estimate_translation(frames[0], frames[1], method="sift"), "method"),
    (lambda frames: estimate_translation(frames[0], frames[1], radius=40), "radius"),
])
def test_bad_input_raises_value_error_naming_the_input(call, name):
    frames = brackets_of(known_hdr(16))
    with pytest.raises(ValueError, match=name):
        call(frames)
