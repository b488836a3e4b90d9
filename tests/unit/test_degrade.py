"""Degradations: each one against a measurable property (Pillow's and PyAV's own encoders,
closed-form ratios, noise statistics), and degrade_pair's determinism."""

import io
import math
from dataclasses import replace

import av
import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_hdr.hdr import degrade
from comfyui_hdr.hdr.degrade import degrade_pair, downscale_reference
from comfyui_hdr.hdr.degrade_config import (
    Contrast,
    DegradationConfig,
    ExposureShift,
    H264Compression,
    JpegCompression,
    SelectiveBlur,
    ShadowNoise,
    WhiteBalance,
)
from comfyui_hdr.hdr.scenes import hdr_scene
from comfyui_hdr.hdr.tonemap import get_tone_mapper
from comfyui_hdr.hdr.transfer import srgb_decode, srgb_encode

CLEAN = DegradationConfig.clean()


def only(**steps) -> DegradationConfig:
    """A config with every degradation off except ``steps``; no 8-bit rounding either."""
    return replace(CLEAN, **steps)


def scene_codes(seed: int = 3, size: int = 48) -> torch.Tensor:
    sdr = get_tone_mapper("bt2390_max_rgb")(hdr_scene(seed, size))
    return srgb_encode(sdr.clamp(0, 1))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("quality", [20, 60, 95])
def test_jpeg_equals_pillow_encoding_at_the_same_quality(quality, device):
    codes = scene_codes()
    decoded, size = degrade.jpeg_compress(codes.to(device), quality)
    assert decoded.device.type == device.type
    decoded = decoded.cpu()
    pixels = (codes.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    expected = np.asarray(Image.open(buffer).convert("RGB")) / 255
    # Same bytes from the same encoder: the size is equal and the pixels are bit-identical
    # (1/255 steps divided exactly; float32 keeps k/255 to 3e-8).
    assert size == buffer.tell()
    np.testing.assert_allclose(decoded.numpy(), expected, rtol=0, atol=1e-7)
    assert psnr(decoded.numpy(), pixels / 255) == pytest.approx(psnr(expected, pixels / 255),
                                                                abs=1e-4)


def test_jpeg_quality_orders_size_and_psnr():
    codes = scene_codes()
    results = [degrade.jpeg_compress(codes, quality) for quality in (20, 60, 95)]
    sizes = [size for _, size in results]
    fidelity = [psnr(decoded.numpy(), codes.numpy()) for decoded, _ in results]
    assert sizes == sorted(sizes) and fidelity == sorted(fidelity)


def test_h264_equals_a_direct_pyav_libx264_encode_and_keeps_odd_sizes():
    codes = torch.stack([scene_codes(seed, 34)[:, :33] for seed in (1, 2, 3)])
    decoded, size = degrade.h264_compress(codes, crf=30, preset="medium")
    assert decoded.shape == codes.shape
    frames = (codes * 255).round().to(torch.uint8).numpy()
    frames = np.pad(frames, ((0, 0), (0, 0), (0, 1), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 34, 34, "yuv420p"
        # One thread, no macroblock tree: the settings h264_compress documents as needed for
        # a reproducible bitstream.
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "30", "preset": "medium", "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert size == buffer.getbuffer().nbytes
    np.testing.assert_allclose(decoded.numpy(), expected[:, :, :33] / 255, rtol=0, atol=1e-7)
    # Reproducible run after run (with libx264's defaults about 1 run in 4 differed here).
    assert all(torch.equal(degrade.h264_compress(codes, crf=30)[0], decoded)
               for _ in range(10))
    sharper, _ = degrade.h264_compress(codes, crf=12)
    assert psnr(sharper.numpy(), codes.numpy()) > psnr(decoded.numpy(), codes.numpy())


def test_joint_exposure_shift_keeps_the_hdr_to_sdr_ratio():
    hdr = (hdr_scene(5, 32) * 0.05).double()
    config = only(exposure=ExposureShift(1.0, (1.5, 1.5)))
    shifted = degrade_pair(hdr, config, seed=0)
    plain = degrade_pair(hdr, CLEAN, seed=0)
    assert [step.name for step in shifted.applied] == ["tone_map", "exposure"]
    assert torch.equal(shifted.hdr, hdr * 2**1.5)
    sdr_shifted = srgb_decode(shifted.sdr_reference.double())
    sdr_plain = srgb_decode(plain.sdr_reference.double())
    unclipped = (sdr_shifted < 0.999).all(-1) & (hdr > 1e-3).all(-1)
    assert unclipped.float().mean() > 0.3
    ratio_shifted = (sdr_shifted / shifted.hdr)[unclipped]
    ratio_plain = (sdr_plain / hdr)[unclipped]
    # The SDR reference is stored as float32 sRGB code values: relative error ~1e-6.
    np.testing.assert_allclose(ratio_shifted, ratio_plain, rtol=2e-6)
    assert (sdr_shifted[~unclipped & (hdr > 1e-3).all(-1)].max(-1).values > 0.999).all()


def textured(level: float, spread: float, size: int = 32) -> torch.Tensor:
    rng = np.random.default_rng(1)
    return torch.tensor(level + spread * rng.uniform(-1, 1, (size, size, 3)))


def high_frequency_energy(codes: torch.Tensor) -> float:
    return float((codes[1:] - codes[:-1]).square().mean() + (codes[:, 1:] - codes[:, :-1])
                 .square().mean())


@pytest.mark.parametrize("region, ramp, texture", [
    ("highlights", (0.75, 0.9), (0.95, 0.04)),
    ("shadows", (0.1, 0.25), (0.05, 0.04)),
])
def test_selective_blur_leaves_midtones_and_blurs_its_region(region, ramp, texture, device):
    midtones, target = textured(0.45, 0.2), textured(*texture)
    codes = torch.cat([midtones, target], dim=1)
    blurred = degrade.selective_blur(codes.to(device), sigma=1.5, region=region,
                                     ramp=ramp).cpu()
    # Mask weight is exactly 0 there: identical up to float64 rounding of x + 0 * d.
    np.testing.assert_allclose(blurred[:, :32], midtones, rtol=0, atol=1e-6)
    region_after = blurred[:, 36:]  # away from the boundary blur mixes in mid-tones
    assert high_frequency_energy(region_after) < 0.2 * high_frequency_energy(target[:, 4:])


def test_selective_blur_through_degrade_pair_records_its_sigma():
    hdr = hdr_scene(2, 32)
    config = only(highlight_blur=SelectiveBlur(1.0, "highlights", (0.75, 0.9), (2.0, 2.0)))
    pair = degrade_pair(hdr, config, seed=4)
    assert pair.applied[-1].name == "highlight_blur"
    assert pair.applied[-1].params == {"sigma": 2.0}


@pytest.mark.parametrize("level", [0.01, 0.25])
def test_shadow_noise_matches_the_stated_shot_and_read_variance(level, device):
    flat = torch.full((4, 64, 64, 3), level, dtype=torch.float64)
    generator = torch.Generator().manual_seed(7)
    noise = degrade.add_shadow_noise(flat.to(device), shot=1.5e-3, read=1e-5,
                                     chroma_ratio=0.35, highpass_kernel=7,
                                     generator=generator).cpu() - flat
    variance = 1.5e-3 * level + 1e-5
    luma = noise.mean(-1)
    red_green = (noise[..., 0] - noise[..., 1]) / math.sqrt(2)
    yellow_blue = (noise[..., 0] + noise[..., 1] - 2 * noise[..., 2]) / math.sqrt(6)
    # 16384 samples per statistic: the variance estimate's standard error is ~1.1%
    # (sqrt(2/n)); 5% is over 4 standard errors.
    assert float(luma.var()) == pytest.approx(variance, rel=0.05)
    # Chroma std along a unit axis is chroma_ratio * sqrt(3) * sigma; luma's along the unit
    # grey axis (1, 1, 1)/sqrt(3) is sqrt(3) * sigma: their ratio is chroma_ratio.
    for chroma in (red_green, yellow_blue):
        assert float(chroma.std() / (luma.std() * math.sqrt(3))) == pytest.approx(0.35, rel=0.05)
    # High-pass: removing a wrapped box mean leaves every frame's mean exactly 0.
    np.testing.assert_allclose(noise.mean(dim=(1, 2)), 0.0, atol=1e-15)


def test_a_seed_draws_the_same_shadow_noise_on_every_device(device):
    # The noise is drawn on the (CPU) generator and moved to the image, so a seed names one
    # noise field everywhere; the float64 high-pass and mixing differ only in rounding.
    flat = torch.full((2, 32, 32, 3), 0.05, dtype=torch.float64)
    on_cpu = degrade.add_shadow_noise(flat, generator=torch.Generator().manual_seed(5))
    here = degrade.add_shadow_noise(flat.to(device), generator=torch.Generator().manual_seed(5))
    assert here.device.type == device.type
    torch.testing.assert_close(here.cpu(), on_cpu, rtol=0, atol=1e-15)


def test_shadow_noise_is_relatively_stronger_in_the_shadows():
    shadows, highlights = 0.01, 0.8
    flat = torch.tensor([shadows, highlights], dtype=torch.float64).repeat_interleave(32)
    flat = flat.view(1, 64, 1, 1).expand(2, 64, 64, 3).contiguous()
    noisy = degrade.add_shadow_noise(flat, generator=torch.Generator().manual_seed(3))
    relative = (noisy / flat - 1).std(dim=(0, 2, 3))
    assert relative[:32].mean() > 5 * relative[32:].mean()


def test_white_balance_changes_channel_ratios_by_the_drawn_gains():
    hdr = (hdr_scene(6, 32) * 0.25).double()
    config = only(white_balance=WhiteBalance(1.0, (0.7, 1.4)))
    pair = degrade_pair(hdr, config, seed=11)
    plain = degrade_pair(hdr, CLEAN, seed=11)
    red, green, blue = pair.applied[-1].params["gains"]
    assert green == 1.0 and 0.7 <= red <= 1.4 and 0.7 <= blue <= 1.4 and red != blue
    balanced = srgb_decode(pair.sdr_reference.double())
    reference = srgb_decode(plain.sdr_reference.double())
    usable = ((balanced < 0.999) & (reference > 0.02)).all(-1)
    assert usable.float().mean() > 0.5
    # float32 code values: ~1e-6 relative error per channel, so ratios to 5e-6.
    np.testing.assert_allclose((balanced[..., 0] / reference[..., 0])[usable], red, rtol=5e-6)
    np.testing.assert_allclose((balanced[..., 2] / reference[..., 2])[usable], blue,
                               rtol=5e-6)
    np.testing.assert_allclose(balanced[..., 1][usable], reference[..., 1][usable], rtol=5e-6)


def test_contrast_scales_the_deviation_from_mean_luma(device):
    # Grey pixels: the luma of each is its code value, so the pivot is the plain mean.
    codes = textured(0.5, 0.2)[..., :1].expand(-1, -1, 3)
    mean = float(codes.mean())
    scaled = degrade.scale_contrast(codes.to(device), 1.3).cpu()
    np.testing.assert_allclose(scaled - mean, 1.3 * (codes - mean), rtol=0, atol=1e-12)
    config = only(contrast=Contrast(1.0, (0.5, 1.5)))
    assert degrade_pair(hdr_scene(1, 16), config, seed=2).applied[-1].name == "contrast"


def test_quantisation_rounds_to_8_bit_code_values():
    codes = degrade_pair(hdr_scene(1, 16), DegradationConfig(), seed=0).sdr_reference
    np.testing.assert_allclose(codes * 255, (codes * 255).round(), rtol=0, atol=2e-5)


def test_same_seed_same_pair_other_seed_other_pair():
    hdr = torch.stack([hdr_scene(seed, 24) for seed in (1, 2)])
    config = DegradationConfig(
        exposure=ExposureShift(1.0), shadow_noise=ShadowNoise(1.0),
        white_balance=WhiteBalance(1.0), jpeg=JpegCompression(1.0),
        h264=H264Compression(1.0, (20, 30)))
    first, again = degrade_pair(hdr, config, seed=5), degrade_pair(hdr, config, seed=5)
    assert torch.equal(first.hdr, again.hdr)
    assert torch.equal(first.sdr_reference, again.sdr_reference)
    assert first.applied == again.applied
    other = degrade_pair(hdr, config, seed=6)
    assert not torch.equal(first.sdr_reference, other.sdr_reference)
    # Each step draws from its own stream: switching noise off keeps the other draws.
    quiet = degrade_pair(hdr, replace(config, shadow_noise=ShadowNoise(0.0)), seed=5)
    expected = drawn(first)
    del expected["shadow_noise"]
    assert drawn(quiet) == expected


def drawn(pair) -> dict:
    """Each applied step's drawn parameters (without the measured codec sizes)."""
    return {step.name: {key: value for key, value in step.params.items() if key != "bytes"}
            for step in pair.applied}


def test_probabilities_pick_steps_at_their_rate():
    config = DegradationConfig.clean()
    config = replace(config, contrast=Contrast(0.3))
    hits = sum(degrade_pair(torch.full((2, 2, 3), 0.5), config, seed=seed).applied[-1].name
               == "contrast" for seed in range(400))
    # Binomial(400, 0.3): mean 120, standard deviation 9.2; 4 standard deviations either way.
    assert 83 <= hits <= 157


@pytest.mark.parametrize("make, message", [
    (lambda: ExposureShift(probability=1.5), "probability"),
    (lambda: Contrast(scale=(1.3, 0.7)), "contrast.scale"),
    (lambda: DegradationConfig(tone_mappers=("filmic",)), "tone_mappers"),
    (lambda: SelectiveBlur(region="midtones"), "region"),
    (lambda: degrade_pair(torch.zeros(4, 4)), "hdr must be RGB"),
])
def test_bad_settings_raise_value_errors_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_reference_downscale_is_the_mean_of_each_block():
    codes = np.random.default_rng(3).random((2, 1, 12, 18, 3), dtype=np.float32)
    small = downscale_reference(codes, 3)
    # numpy oracle: the mean over each 3 x 3 block of the [.., H, W, 3] picture.
    expected = codes.reshape(2, 1, 4, 3, 6, 3, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(small, expected, rtol=1e-6)  # float32 summation order
    np.testing.assert_array_equal(downscale_reference(codes, 1), codes)
    with pytest.raises(ValueError, match="18x12 cannot be shrunk by factor 5: .*divide both sides"):
        downscale_reference(codes, 5)
