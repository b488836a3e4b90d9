"""``caption``: DiffHDR's ``caption.txt`` from a local vision-language model.

The regions are checked with numbers (a lamp and a crushed shadow on a grey frame); the
model is a tiny random Qwen2.5-VL (``harness.tiny_text_encoders``), so its words are
gibberish: the tests check the structure of what it writes, that it is shown the right
crops, that its answers are greedy (the same whatever the random seed, although its
generation config samples), and that files are written atomically and kept unless
``--overwrite``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from comfyui_hdr.harness.tiny_text_encoders import write_tiny_qwen25_vl, write_tiny_umt5
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.gamut import luminance_weights
from comfyui_hdr.hdr.transfer import srgb_encode
from comfyui_hdr.training.caption import (
    QUESTIONS,
    Captioner,
    caption_picture,
    exposure_regions,
    main,
)
from comfyui_hdr.training.data import parse_caption

LAMP = (slice(16, 40), slice(80, 112))
SHADOW = (slice(60, 84), slice(10, 34))


def _frame() -> torch.Tensor:
    """Mid grey 128x96 with a lamp (8, 6, 4: luminance 6.281, 2.65 stops above white) and
    a shadow at 0.0005 (sRGB code 0.0065, below DiffHDR's 0.01 crush threshold)."""
    hdr = torch.full((96, 128, 3), 0.18)
    hdr[LAMP] = torch.tensor([8.0, 6.0, 4.0])
    hdr[SHADOW] = 0.0005
    return hdr


def test_regions_are_the_masks_boxes_at_exposures_that_show_their_detail():
    views = exposure_regions(_frame())
    over, under = views["over"], views["under"]
    # DiffHDR's masks reach 3 px past a region's edge (hdr.masks' doctest): the lamp's mask
    # spans rows 13-42, columns 77-114; +8 px margin: rows 5-50, columns 69-122; grown,
    # centred, to the 64 px minimum and kept in the frame: rows 0-63, columns 64-127.
    assert over.box == (0, 64, 64, 64)
    # 30 x 38 px less 19 px rounded off at each corner (the blur and the 0.2 threshold).
    assert over.share * 96 * 128 == pytest.approx(30 * 38 - 4 * 19, abs=1e-9)
    # The shadow: rows 57-86, columns 7-36 -> 49-94 / 0-44 -> 64 px: rows 32-95, cols 0-63;
    # 30 x 30 px less 19 per corner (the same 824 px as hdr.masks' doctest square).
    assert under.box == (32, 0, 64, 64)
    assert under.share * 96 * 128 == pytest.approx(824, abs=1e-9)
    # Highlights down so their 99th-percentile luminance is 1.0 (the lamp's Rec.709
    # luminance, 6.281); shadows up so their median is mid grey: 0.18 / 0.0005. Float32.
    lamp = float(luminance_weights("rec709") @ np.array([8.0, 6.0, 4.0]))
    assert over.gain == pytest.approx(1 / lamp, rel=1e-6)
    assert under.gain == pytest.approx(360.0, rel=1e-5)
    for view in (over, under):
        top, left, height, width = view.box
        expected = srgb_encode((_frame()[top:top + height, left:left + width] * view.gain)
                               .clamp(0, 1))
        torch.testing.assert_close(view.image, expected, rtol=0, atol=0)
    # The lamp's detail is no longer white: its red channel (8 / 6.281) clips to code 1.0,
    # green and blue (0.955, 0.637 linear) do not.
    assert float(over.image[30, 90 - 64, 0]) == pytest.approx(1.0, abs=1e-7)
    assert over.image[30, 90 - 64, 1:].tolist() == pytest.approx(
        srgb_encode(torch.tensor([6.0, 4.0]) / lamp).tolist(), rel=1e-5)


def test_regions_too_small_or_absent_get_no_view():
    assert exposure_regions(torch.full((64, 64, 3), 0.18)) == {"over": None, "under": None}
    small = torch.full((96, 128, 3), 0.18)
    small[40:48, 60:68] = 50.0  # 8x8 px: DiffHDR's 9 px opening removes it
    assert exposure_regions(small, min_share=0.0)["over"] is None
    small[40:50, 60:70] = 50.0  # 10x10 px: a 140 px mask, 1.1% of the frame
    assert exposure_regions(small)["over"].share * 96 * 128 == 140
    assert exposure_regions(small, min_share=0.02)["over"] is None
    # Three stops up clips the grey surround too (0.18 x 8 = 1.44): most of the frame.
    assert exposure_regions(_frame(), exposure_stops=3.0)["over"].share > 0.9


@pytest.fixture(scope="module")
def captioner_folder(tmp_path_factory):
    return write_tiny_qwen25_vl(tmp_path_factory.mktemp("vlm") / "qwen25_vl")


@pytest.fixture(scope="module")
def captioner(captioner_folder):
    return Captioner(captioner_folder, max_new_tokens=8)


def test_the_model_sees_each_region_crop_and_answers_greedily(captioner):
    shown = []
    processor = captioner.processor

    class Spy:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, text, images, **options):
            shown.append((np.asarray(images[0]), text[0]))
            return processor(text=text, images=images, **options)

    captioner.processor = Spy()
    try:
        torch.manual_seed(1)
        caption, views = caption_picture(_frame(), captioner)
        torch.manual_seed(2)
        again, _ = caption_picture(_frame(), captioner)
    finally:
        captioner.processor = processor
    # Greedy: two seeds, one caption (the tiny model's generation config samples).
    assert caption == again and caption.overexposed and caption.underexposed
    assert parse_caption(caption.prompt) == caption
    for (image, text), name in zip(shown, ("over", "under", "over", "under"), strict=True):
        expected = (views[name].image.numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(image, expected)
        # One picture, that region's question, and the assistant's turn to answer.
        assert text.count("<|image_pad|>") == 1 and QUESTIONS[name] in text
        assert text.endswith("<|im_start|>assistant\n")


def test_a_captioned_dataset_round_trip_keeps_existing_captions(captioner_folder, tmp_path,
                                                                capsys):
    data = tmp_path / "data"
    for name in ("lamp", "flat", "hand"):
        (data / name).mkdir(parents=True)
    for index in range(3):  # the middle picture (frame 2) is captioned
        frame = _frame() if index == 1 else torch.full((96, 128, 3), 0.18)
        write_exr(data / "lamp" / f"frame_{index + 1:05d}.exr", frame.numpy())
    write_exr(data / "flat" / "grey.exr", np.full((96, 128, 3), 0.18, np.float32))
    write_exr(data / "hand" / "lamp.exr", _frame().numpy())
    (data / "hand" / "caption.txt").write_text("[Overexposed: a lamp]", encoding="utf-8")
    arguments = ["--data", str(data), "--captioner", str(captioner_folder),
                 "--max-new-tokens", "8", "--device", "cpu", "--dtype", "fp32"]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert "1 kept, 1 no regions, 1 written" in output and "--overwrite" in output
    written = (data / "lamp" / "caption.txt").read_text(encoding="utf-8")
    caption = parse_caption(written)
    assert written == caption.prompt + "\n" and caption.overexposed and caption.underexposed
    assert not (data / "flat" / "caption.txt").exists()
    assert (data / "hand" / "caption.txt").read_text(encoding="utf-8") == "[Overexposed: a lamp]"
    assert main([*arguments, "--overwrite"]) == 0
    assert (data / "lamp" / "caption.txt").read_text(encoding="utf-8") == written  # greedy
    assert parse_caption((data / "hand" / "caption.txt").read_text(encoding="utf-8")).underexposed
    leftovers = [path.name for path in data.rglob(".*")]
    assert leftovers == []  # atomic writes leave no temporary files


def _config_only(folder, config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_a_folder_that_is_not_a_vision_language_model_is_refused_before_loading(
        tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_exr(data / "lamp.exr", _frame().numpy())
    # config.json alone (no weights): the check must come before anything is loaded.
    _config_only(tmp_path / "qwen2", {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    write_tiny_umt5(tmp_path / "wan")
    for folder, expected in ((tmp_path / "qwen2", "holds a 'qwen2' model (Qwen2ForCausalLM)"),
                             (tmp_path / "wan" / "text_encoder", "that is wan's --text-encoder"),
                             (tmp_path / "missing", "is not a folder")):
        assert main(["--data", str(data), "--captioner", str(folder)]) == 2
        error = capsys.readouterr().err
        assert expected in error and "--captioner" in error and "Qwen2.5-VL" in error
    assert not (data / "caption.txt").exists()
