"""Training datasets: sequence discovery, bad folders, captions, crops, gamut, NaN frames,
procedural scenes, collate and the latent cache's hits, misses and invalidation."""

import os
import warnings

import colour
import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.degrade import DegradationConfig
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.radiance import read_hdr, write_hdr
from comfyui_hdr.hdr.scenes import hdr_scene
from comfyui_hdr.training.data import (
    Caption,
    ExrFolderDataset,
    LatentCache,
    ProceduralScenes,
    collate,
    discover_sources,
    parse_caption,
    weights_hash,
)


def frame(value: float, height: int = 8, width: int = 12) -> np.ndarray:
    """A frame whose pixel (y, x) holds value + y + x / 100 in R, so crops are readable."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([value + y + x / 100, np.full_like(y, value), np.full_like(y, 0.5)], -1)


def write_sequence(folder, name_format, numbers, **frame_options):
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        write_exr(folder / name_format.format(number), frame(number, **frame_options),
                  pixel_type="float")


@pytest.fixture
def library(tmp_path):
    """shot_a: frame_00001..00004.exr; shot_b: ComfyUI hdr_00001_..00003_.exr + caption;
    a loose single image at the root."""
    write_sequence(tmp_path / "shot_a", "frame_{:05d}.exr", range(1, 5))
    write_sequence(tmp_path / "shot_b", "hdr_{:05d}_.exr", range(1, 4))
    (tmp_path / "shot_b" / "caption.txt").write_text(
        "[OVEREXPOSED: sun glare on the water]; [underexposed: the pier's shadow]\n")
    write_exr(tmp_path / "sky.exr", frame(100.0), pixel_type="float")
    return tmp_path


def test_discovers_sequences_comfyui_names_and_single_images(library):
    sources = discover_sources(library)
    assert [(s.name, len(s.paths)) for s in sources] == [
        ("sky", 1), ("shot_a/frame_", 4), ("shot_b/hdr_", 3)]
    assert [p.name for p in sources[2].paths] == [
        "hdr_00001_.exr", "hdr_00002_.exr", "hdr_00003_.exr"]
    assert (sources[1].height, sources[1].width) == (8, 12)
    assert sources[2].caption == Caption("sun glare on the water", "the pier's shadow")
    assert sources[1].caption is None


def test_radiance_hdr_images_and_sequences_are_sources_read_as_openimageio_reads_them(
        tmp_path):
    import OpenImageIO as oiio

    write_hdr(tmp_path / "hdri.hdr", frame(3.0))
    (tmp_path / "seq").mkdir()
    for number in (1, 2):
        write_hdr(tmp_path / "seq" / f"plate.{number:04d}.hdr", frame(number))
    sources = discover_sources(tmp_path)
    assert [(s.name, len(s.paths)) for s in sources] == [("hdri", 1), ("seq/plate.", 2)]
    item = ExrFolderDataset(tmp_path)[0]
    expected = oiio.ImageBuf(str(tmp_path / "hdri.hdr")).get_pixels(oiio.FLOAT)
    # The RGBE file's own values (8-bit mantissas), exactly as OpenImageIO decodes them.
    np.testing.assert_array_equal(item["hdr"][0].numpy(), expected)
    np.testing.assert_array_equal(expected, read_hdr(tmp_path / "hdri.hdr").pixels)


def test_frame_gap_is_an_error_naming_both_files(tmp_path):
    write_sequence(tmp_path / "shot", "frame_{:05d}.exr", [1, 2, 5])
    with pytest.raises(ValueError, match=r"frame_00002.exr is followed by frame_00005.exr "
                                         r"\(frames 3..4 missing\)"):
        discover_sources(tmp_path)


def test_mixed_frame_sizes_are_an_error_naming_the_files(tmp_path):
    write_sequence(tmp_path / "shot", "frame_{:05d}.exr", [1, 2])
    write_exr(tmp_path / "shot" / "frame_00003.exr", frame(3, 8, 10), pixel_type="float")
    with pytest.raises(ValueError, match=r"frame_00003.exr is 10x8 but frame_00001.exr is "
                                         r"12x8"):
        discover_sources(tmp_path)


def test_nan_frames_are_skipped_with_a_count_or_refused(tmp_path):
    write_sequence(tmp_path / "shot", "frame_{:05d}.exr", [1, 2, 4, 5])
    bad = frame(3)
    bad[2, 3, 1] = np.nan
    write_exr(tmp_path / "shot" / "frame_00003.exr", bad, pixel_type="float",
              check_finite=False)
    with pytest.warns(UserWarning, match="skipped 1 frames with NaN/Inf"):
        dataset = ExrFolderDataset(tmp_path, frames_per_clip=2, stride=1)
    # Clips 1-2, 4-5; none spans frame 3.
    assert [item["paths"][0].name for item in dataset] == ["frame_00001.exr",
                                                            "frame_00004.exr"]
    with pytest.raises(ValueError, match="frame_00003.exr has 1 NaN/Inf pixels"):
        discover_sources(tmp_path, nan_frames="error")


@pytest.mark.parametrize("text, expected", [
    ("[Overexposed: bright sky]; [Underexposed: dark alley]", Caption("bright sky", "dark alley")),
    ("[underexposed:  cellar ]", Caption(None, "cellar")),
    ("  [OverExposed: neon sign];\n", Caption("neon sign", None)),
])
def test_caption_parses_diffhdr_format_in_any_case(text, expected):
    assert parse_caption(text) == expected


@pytest.mark.parametrize("text", [
    "a photo of a beach", "[Overexposed: sky] and more", "[Highlights: sky]",
    "[Overexposed: a]; [Overexposed: b]", "[Overexposed sky]", ""])
def test_unparseable_caption_warns_and_falls_back_to_none(tmp_path, text):
    write_sequence(tmp_path / "shot", "frame_{:05d}.exr", [1])
    (tmp_path / "shot" / "caption.txt").write_text(text)
    with pytest.warns(UserWarning, match="caption.txt.*using no caption"):
        sources = discover_sources(tmp_path)
    assert sources[0].caption is None


def test_items_carry_clip_caption_prompt_and_paths(library):
    dataset = ExrFolderDataset(library, frames_per_clip=2, random_crop=False)
    # shot_a: 2 clips (stride 2), shot_b: 1 clip; the single image is shorter than a clip.
    assert len(dataset) == 3
    item = dataset[2]
    assert item["hdr"].shape == (2, 8, 12, 3) and item["hdr"].dtype == torch.float32
    assert item["prompt"] == "[Overexposed: sun glare on the water]; [Underexposed: the " \
                             "pier's shadow]"
    np.testing.assert_array_equal(item["hdr"][1], frame(2))
    assert item["crop"] == (0, 0, 8, 12)


def test_centre_crop_and_random_crop_are_deterministic_by_seed_and_epoch(library):
    centre = ExrFolderDataset(library, crop=(4, 6), random_crop=False)[0]
    assert centre["crop"] == (2, 3, 4, 6)
    np.testing.assert_array_equal(centre["hdr"][0], frame(100.0)[2:6, 3:9])
    first = ExrFolderDataset(library, crop=4, seed=3)
    again = ExrFolderDataset(library, crop=4, seed=3)
    boxes = [first[i]["crop"] for i in range(len(first))]
    assert boxes == [again[i]["crop"] for i in range(len(again))]
    top, left = boxes[1][:2]
    np.testing.assert_array_equal(first[1]["hdr"][0], frame(1)[top:top + 4, left:left + 4])
    first.set_epoch(1)
    other_epoch = [first[i]["crop"] for i in range(len(first))]
    other_seed = ExrFolderDataset(library, crop=4, seed=4)
    # 8 items, 5 x 9 positions each: equal lists by chance have probability ~1e-13.
    assert other_epoch != boxes
    assert [other_seed[i]["crop"] for i in range(len(other_seed))] != boxes
    with pytest.raises(ValueError, match="larger than"):
        ExrFolderDataset(library, crop=(16, 16))


def test_stated_gamut_is_converted_to_rec709(tmp_path):
    write_sequence(tmp_path / "shot", "frame_{:05d}.exr", [1])
    item = ExrFolderDataset(tmp_path, gamut="ACEScg")[0]
    expected = colour.RGB_to_RGB(frame(1), "ACEScg", "ITU-R BT.709",
                                 chromatic_adaptation_transform="Bradford")
    # float32 pixels through a float64 3x3 matrix: relative error ~1e-7.
    np.testing.assert_allclose(item["hdr"][0], expected, rtol=1e-5, atol=1e-6)


def test_degradation_pairs_are_reproducible_per_epoch(library):
    config = DegradationConfig()
    dataset = ExrFolderDataset(library, crop=4, degradation=config, seed=1)
    item = dataset[3]
    assert item["sdr_reference"].shape == item["hdr"].shape
    assert item["degradations"][0].name == "tone_map"
    assert torch.equal(dataset[3]["sdr_reference"], item["sdr_reference"])
    # Another epoch draws other degradations (and crops) for the same item.
    dataset.set_epoch(1)
    other = dataset[3]
    assert [(step.name, step.params) for step in other["degradations"]] != [
        (step.name, step.params) for step in item["degradations"]]
    dataset.set_epoch(0)
    assert torch.equal(dataset[3]["sdr_reference"], item["sdr_reference"])


def test_procedural_scenes_are_a_builtin_source():
    scenes = ProceduralScenes(count=3, size=(24, 32), seed=10, crop=16, random_crop=False)
    assert len(scenes) == 3
    item = scenes[1]
    assert item["scene_seed"] == 11 and item["caption"] is None
    assert item["crop"] == (4, 8, 16, 16)
    torch.testing.assert_close(item["hdr"][0], hdr_scene(11, 24, 32)[4:20, 8:24],
                               rtol=0, atol=0)
    with pytest.raises(IndexError):
        scenes[3]


def test_collate_stacks_clips_and_lists_the_rest(library):
    items = [ProceduralScenes(2, 16, degradation=DegradationConfig.clean())[i] for i in (0, 1)]
    batch = collate(items)
    assert batch["hdr"].shape == (2, 1, 16, 16, 3)
    assert batch["sdr_reference"].shape == (2, 1, 16, 16, 3)
    assert batch["scene_seed"] == [0, 1]
    dataset = ExrFolderDataset(library)
    with pytest.raises(ValueError, match="set crop="):
        collate([dataset[0], ProceduralScenes(1, 16)[0]])


@pytest.fixture
def cache_setup(library):
    item = ExrFolderDataset(library, frames_per_clip=2, crop=4, random_crop=False)[0]
    vae = torch.nn.Conv2d(3, 4, 1)
    calls = []

    def encode():
        calls.append(1)
        return torch.full((4, 2, 2), float(len(calls)))

    parts = {"files": item["paths"], "crop": item["crop"], "curve": "logc4",
             "vae": weights_hash(vae)}
    return LatentCache(library / "cache"), parts, encode, calls, item, vae


def test_latent_cache_hits_after_the_first_computation(cache_setup):
    cache, parts, encode, calls, _, _ = cache_setup
    first = cache.get_or_compute(parts, encode)
    second = cache.get_or_compute(parts, encode)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    stored = list(cache.folder.glob("*.safetensors"))
    assert len(stored) == 1 and not list(cache.folder.glob(".*.tmp"))
    both = cache.get_or_compute(parts | {"curve": "pq"}, lambda: {"mean": torch.ones(2),
                                                                  "std": torch.zeros(2)})
    assert set(cache.get_or_compute(parts | {"curve": "pq"}, encode)) == set(both)


def test_latent_cache_misses_when_file_mtime_crop_curve_or_vae_change(cache_setup):
    cache, parts, encode, calls, item, vae = cache_setup
    cache.get_or_compute(parts, encode)
    first_file = item["paths"][0]
    stat = first_file.stat()
    os.utime(first_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert float(cache.get_or_compute(parts, encode)[0, 0, 0]) == 2  # recomputed
    assert float(cache.get_or_compute(parts, encode)[0, 0, 0]) == 2  # and cached again
    with torch.no_grad():
        vae.weight[0, 0] += 1
    for changed in ({"crop": (0, 0, 4, 4)}, {"curve": "logc3"}, {"vae": weights_hash(vae)}):
        before = len(calls)
        cache.get_or_compute(parts | changed, encode)
        assert len(calls) == before + 1, changed
    assert (cache.hits, cache.misses) == (1, 5)


def test_latent_cache_recomputes_a_corrupt_file(cache_setup):
    cache, parts, encode, calls, _, _ = cache_setup
    cache.get_or_compute(parts, encode)
    stored = next(cache.folder.glob("*.safetensors"))
    stored.write_bytes(b"\x00" * 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(cache.get_or_compute(parts, encode)[0, 0, 0]) == 2
    assert float(cache.get_or_compute(parts, encode)[0, 0, 0]) == 2 and len(calls) == 2


@pytest.mark.parametrize("make, message", [
    (lambda root: ExrFolderDataset(root, nan_frames="ignore"), "nan_frames"),
    (lambda root: ExrFolderDataset(root / "missing"), "is not a folder"),
    (lambda root: ExrFolderDataset(root, frames_per_clip=9), "lower frames_per_clip"),
    (lambda root: ExrFolderDataset(root, gamut="filmic"), "gamut"),
    (lambda root: LatentCache(root / "c").get_or_compute({"x": object()}, list), "cache key"),
])
def test_bad_arguments_raise_value_errors(library, make, message):
    with pytest.raises(ValueError, match=message):
        make(library)
