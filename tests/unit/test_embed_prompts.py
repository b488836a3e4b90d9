"""``embed-prompts`` against the diffusers pipelines it stands in for.

Tiny random encoders of the real classes (``harness.tiny_text_encoders``: UMT5 for Wan,
Qwen2.5-VL for Qwen-Image, CLIP + T5 for Flux, with offline-trained tokenizers) go through
the command line; each prompt's stored conditioning must equal what the family's diffusers
pipeline object, built from the same folders, returns from ``encode_prompt`` for that
prompt. Both run the same float32 operations in the same order on the same weights, so the
bound is exact equality (measured: max |difference| 0.0 for every family).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from comfyui_hdr.harness.tiny_text_encoders import (
    write_tiny_flux_encoders,
    write_tiny_qwen_image_encoder,
    write_tiny_umt5,
)
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.training.embed_prompts import main
from comfyui_hdr.training.prompt_embeddings import PromptEmbeddings

PROMPTS = ("[Overexposed: the sun and bright clouds]; [Underexposed: tree bark in the shade]",
           "", "a  dark forest &amp; roots\n")
"""A DiffHDR caption, the empty prompt, and one that Wan's prompt_clean changes (HTML
entity, doubled space, trailing newline)."""
CPU = ("--device", "cpu", "--dtype", "fp32")
"""Float32 on the CPU (``auto`` would pick CUDA and bf16 where a GPU is present)."""
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
"""The pipeline comparisons run on every device present (CI: the CPU), in float32 on both
sides; measured on an H200 they are exact on CUDA too, in fp32 and bf16."""


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_encoders")
    return {"wan": write_tiny_umt5(root / "wan"),
            "qwen_image": write_tiny_qwen_image_encoder(root / "qwen_image"),
            "flux": write_tiny_flux_encoders(root / "flux")}


def _embed(encoders, family, tmp_path, *extra, prompts=PROMPTS, device="cpu"):
    output = tmp_path / f"{family}.safetensors"
    arguments = ["--family", family, "--model", str(encoders[family]), "--output", str(output),
                 "--device", device, "--dtype", "fp32"]
    code = main([*arguments, *(item for prompt in prompts for item in ("--prompt", prompt)),
                 *extra])
    assert code == 0
    return PromptEmbeddings.load(output)


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@pytest.mark.parametrize("device", DEVICES)
def test_wan_embeddings_equal_wan_pipeline_encode_prompt_bit_exact(encoders, tmp_path, device):
    from diffusers import WanPipeline
    from transformers import UMT5EncoderModel

    stored = _embed(encoders, "wan", tmp_path, device=device)
    folder = encoders["wan"]
    pipeline = WanPipeline(tokenizer=_tokenizer(folder / "tokenizer"),
                           text_encoder=UMT5EncoderModel.from_pretrained(folder / "text_encoder"),
                           transformer=None, vae=None, scheduler=None).to(device)
    assert stored.prompts == PROMPTS
    assert stored.prompt_embeds.shape == (3, 512, 32)  # WanPipeline.__call__'s 512 tokens
    # Wan keeps its zeroed padding: WanPipeline and ComfyUI's UMT5 both give the model all 512.
    assert stored.prompt_embeds_mask is None and stored.pooled_prompt_embeds is None
    assert stored.encoder == {"family": "wan", "dtype": "float32",
                              "max_sequence_length": "512", "model_types": "umt5"}
    with torch.no_grad():
        for row, prompt in enumerate(PROMPTS):
            expected, _ = pipeline.encode_prompt(prompt, do_classifier_free_guidance=False,
                                                 max_sequence_length=512, device=device)
            assert torch.equal(stored.prompt_embeds[row:row + 1], expected.cpu())
    real = (stored.prompt_embeds.abs().sum(-1) > 0).sum(-1)
    # The caption's tokens + </s> (the tiny tokenizer: 18), '' is </s> alone.
    assert real.tolist()[1] == 1 and 1 < real.tolist()[0] < 512


@pytest.mark.parametrize("device", DEVICES)
def test_qwen_image_embeddings_equal_qwen_image_pipeline_with_their_padding_mask(
        encoders, tmp_path, device):
    from diffusers import QwenImagePipeline
    from transformers import Qwen2_5_VLForConditionalGeneration

    stored = _embed(encoders, "qwen_image", tmp_path, device=device)
    folder = encoders["qwen_image"]
    pipeline = QwenImagePipeline(
        tokenizer=_tokenizer(folder / "tokenizer"),
        text_encoder=Qwen2_5_VLForConditionalGeneration.from_pretrained(folder / "text_encoder"),
        transformer=None, vae=None, scheduler=None).to(device)
    lengths = stored.prompt_embeds_mask.sum(-1).tolist()
    assert stored.prompt_embeds.shape == (3, max(lengths), 32)
    with torch.no_grad():
        for row, prompt in enumerate(PROMPTS):
            expected, mask = pipeline.encode_prompt(prompt, device=device)
            assert mask is None  # one prompt: all its tokens are real
            assert lengths[row] == expected.shape[1]
            assert torch.equal(stored.prompt_embeds[row:row + 1, :lengths[row]], expected.cpu())
            assert not stored.prompt_embeds[row, lengths[row]:].any()
            assert stored.prompt_embeds_mask[row, :lengths[row]].all()
    # '' leaves the template's suffix: <|im_end|> \n <|im_start|> assistant \n.
    assert lengths[1] == 5


@pytest.mark.parametrize("device", DEVICES)
def test_flux_embeddings_equal_flux_pipeline_t5_and_clip_pooled(encoders, tmp_path, device):
    from diffusers import FluxPipeline
    from transformers import CLIPTextModel, T5EncoderModel

    stored = _embed(encoders, "flux", tmp_path, device=device)
    folder = encoders["flux"]
    pipeline = FluxPipeline(
        tokenizer=_tokenizer(folder / "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer_2=_tokenizer(folder / "tokenizer_2"),
        text_encoder_2=T5EncoderModel.from_pretrained(folder / "text_encoder_2"),
        transformer=None, vae=None, scheduler=None).to(device)
    assert stored.prompt_embeds.shape == (3, 512, 48)
    assert stored.pooled_prompt_embeds.shape == (3, 32) and stored.prompt_embeds_mask is None
    with torch.no_grad():
        for row, prompt in enumerate(PROMPTS):
            expected, pooled, _ = pipeline.encode_prompt(prompt, prompt_2=None, device=device)
            assert torch.equal(stored.prompt_embeds[row:row + 1], expected.cpu())
            assert torch.equal(stored.pooled_prompt_embeds[row:row + 1], pooled.cpu())


def test_data_folder_gives_every_caption_train_lora_looks_up_and_the_empty_prompt(
        encoders, tmp_path):
    from comfyui_hdr.training.data import ExrFolderDataset

    data = tmp_path / "data"
    for name, caption in (("sun", "[overexposed: the sun]; [underexposed: tree bark]"),
                          ("lamp", "[Overexposed: a street lamp]"), ("plain", None)):
        (data / name).mkdir(parents=True)
        write_exr(data / name / "frame_00001.exr", np.full((16, 16, 3), 0.18, np.float32))
        if caption:
            (data / name / "caption.txt").write_text(caption, encoding="utf-8")
    (tmp_path / "not_data").mkdir()  # a caption beside no EXR is not training data
    (tmp_path / "not_data" / "caption.txt").write_text("[Overexposed: x]", encoding="utf-8")
    output = tmp_path / "data.safetensors"
    assert main(["--family", "wan", "--model", str(encoders["wan"]), "--data", str(data),
                 "--output", str(output), *CPU]) == 0
    stored = PromptEmbeddings.load(output)
    assert stored.prompts == ("[Overexposed: a street lamp]",
                              "[Overexposed: the sun]; [Underexposed: tree bark]", "")
    prompts = [item["prompt"] for item in ExrFolderDataset(data)]
    text, pooled = stored.lookup(prompts)  # what train-lora does with each batch
    assert text.shape == (3, 512, 32) and pooled is None


def test_existing_output_is_kept_without_overwrite(encoders, tmp_path, capsys):
    first = _embed(encoders, "wan", tmp_path, prompts=("a lamp",))
    output = tmp_path / "wan.safetensors"
    before = output.read_bytes()
    arguments = ["--family", "wan", "--model", str(encoders["wan"]), "--prompt", "the sun",
                 "--output", str(output), *CPU]
    assert main(arguments) == 2
    assert "--overwrite" in capsys.readouterr().err and output.read_bytes() == before
    assert main([*arguments, "--overwrite"]) == 0
    assert PromptEmbeddings.load(output).prompts == ("the sun",) != first.prompts
    assert [path.name for path in tmp_path.iterdir()] == ["wan.safetensors"]  # no temporaries


def _config_only(folder, model_type, architectures):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"model_type": model_type, "architectures": architectures}), encoding="utf-8")


@pytest.mark.parametrize("family, model_type, message", [
    ("wan", "t5", "--text-encoder .* holds a 't5' model \\(T5EncoderModel\\) \\(that is flux's "
                  "--text-encoder-2\\); --text-encoder needs the UMT5-XXL encoder"),
    ("qwen_image", "qwen2", "--text-encoder .* holds a 'qwen2' model .*Qwen2.5-VL"),
    ("flux", "umt5", "--text-encoder .* holds a 'umt5' model .*that is wan's --text-encoder"),
])
def test_a_text_encoder_of_another_family_is_refused_before_any_weight_is_read(
        encoders, tmp_path, capsys, family, model_type, message):
    import re

    # Only a config.json: the family check must come before anything reads weights.
    _config_only(tmp_path / "model" / "text_encoder", model_type, ["T5EncoderModel"])
    flux = encoders["flux"]
    second = (["--text-encoder-2", str(flux / "text_encoder_2"), "--tokenizer-2",
               str(flux / "tokenizer_2")] if family == "flux" else [])
    assert main(["--family", family, "--model", str(tmp_path / "model"), "--tokenizer",
                 str(encoders["wan"] / "tokenizer"), *second, "--prompt", "x",
                 "--output", str(tmp_path / "out.safetensors")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--model", "{root}/missing"], "--model's text_encoder/ .*missing/text_encoder is not a"),
    (["--text-encoder", "{wan}/text_encoder"], "give --model .* or --tokenizer"),
    (["--model", "{wan}", "--tokenizer", "{wan}/text_encoder"], "--tokenizer .* holds no tok"),
    (["--model", "{root}/weightless"], "no weights"),
    (["--model", "{wan}", "--prompts-file", "{root}/none.txt"], "--prompts-file .* does not exist"),
    (["--model", "{wan}", "--tokenizer-2", "{wan}/tokenizer"], "are Flux's T5; leave them out"),
])
def test_bad_folders_and_prompt_sources_name_the_flag(encoders, tmp_path, capsys, arguments,
                                                     message):
    import re
    import shutil

    shutil.copytree(encoders["wan"], tmp_path / "weightless")
    (tmp_path / "weightless" / "text_encoder" / "model.safetensors").unlink()
    filled = [item.format(root=tmp_path, wan=encoders["wan"]) for item in arguments]
    assert main(["--family", "wan", *filled, "--prompt", "x",
                 "--output", str(tmp_path / "out.safetensors")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_tokenizer_that_is_not_qwen25_vls_is_refused_by_the_template_prefix(
        encoders, tmp_path, capsys):
    # The T5 tokenizer splits the template prefix differently from Qwen2.5-VL's 34 tokens,
    # so drop_idx would cut the prompt in the wrong place.
    assert main(["--family", "qwen_image", "--model", str(encoders["qwen_image"]),
                 "--tokenizer", str(encoders["wan"] / "tokenizer"), "--prompt", "x",
                 "--output", str(tmp_path / "out.safetensors")]) == 2
    assert "not Qwen2.5-VL's 34" in capsys.readouterr().err


def test_no_prompt_is_an_error_naming_the_sources(encoders, tmp_path, capsys):
    assert main(["--family", "wan", "--model", str(encoders["wan"]),
                 "--output", str(tmp_path / "out.safetensors")]) == 2
    assert "--prompt TEXT" in capsys.readouterr().err
