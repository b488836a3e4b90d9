"""LumaFlux adapter folders (hdr/models/lumaflux_folder.py): a tiny Flux trained a few
steps, saved, and loaded into a fresh frozen copy of its base gives the training-time
output bit for bit; another base, another SigLIP, a broken folder and a clobber are refused."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers import FluxTransformer2DModel
from test_lumaflux_fit import _pipeline
from transformers import SiglipVisionConfig, SiglipVisionModel

from comfyui_hdr.hdr.models import lumaflux_folder, lumaflux_parts
from comfyui_hdr.hdr.models.checkpoint_dir import config_sha256
from comfyui_hdr.training import lumaflux_fit


class RenamedFlux(FluxTransformer2DModel):
    """The same config under another class name: must count as another base model."""


def _trained(steps: int = 3):
    pipeline, encoder = _pipeline()
    sdr = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(2))
    tokens = lumaflux_parts.siglip_tokens(encoder, sdr)
    target = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(3)) * 0.7
    lumaflux_fit.fit(pipeline, sdr, tokens, target,
                     lumaflux_fit.FitOptions(steps=steps, learning_rate=1e-3))
    return pipeline, encoder, sdr, tokens


def _adapter_set(pipeline):
    return lumaflux_folder.LumaFluxAdapterSet(pipeline.adapters, pipeline.head, pipeline.prompt,
                                              pipeline.pooled_prompt, pipeline.patch)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Flux + adapters trained 3 steps; the base saved, the adapters saved."""
    root = tmp_path_factory.mktemp("lumaflux")
    pipeline, encoder, sdr, tokens = _trained()
    pipeline.transformer.save_pretrained(root / "base")
    lumaflux_folder.save_lumaflux(root / "adapters", pipeline.transformer,
                                  _adapter_set(pipeline))
    timestep = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        expected = pipeline(sdr, tokens, timestep)
    return {"root": root, "encoder": encoder, "sdr": sdr, "tokens": tokens,
            "timestep": timestep, "expected": expected, "pipeline": pipeline}


def test_reloaded_adapters_on_a_fresh_frozen_base_give_the_training_time_output(saved):
    base = FluxTransformer2DModel.from_pretrained(saved["root"] / "base").eval()
    base.requires_grad_(False)
    loaded = lumaflux_folder.load_lumaflux(saved["root"] / "adapters", base, saved["encoder"])
    pipeline = lumaflux_fit.LumaFluxPipeline(base, loaded.adapters.attach(base), loaded.head,
                                             loaded.prompt, loaded.pooled_prompt, loaded.patch)
    with torch.no_grad():
        output = pipeline(saved["sdr"], saved["tokens"], saved["timestep"])
    # same float32 weights, same ops in the same order on the same CPU: bit for bit
    for field in ("ycbcr", "pq_rgb", "linear", "derivatives"):
        assert torch.equal(getattr(output, field), getattr(saved["expected"], field)), field
    # and the trained adapters did move the output off the frozen model's identity head
    assert not torch.equal(output.derivatives, torch.ones_like(output.derivatives))


def test_folder_json_names_the_base_switches_rank_siglip_knots_and_colour(saved):
    metadata = json.loads((saved["root"] / "adapters" / "lumaflux.json").read_text())
    transformer = saved["pipeline"].transformer
    assert metadata["base_model"] == {"class_name": "FluxTransformer2DModel",
                                      "config_sha256": config_sha256(transformer)}
    assert metadata["switches"] == {"pga": True, "gates": True, "spectral": True,
                                    "pcm": True, "coupler": True}
    assert metadata["rank"] == 8
    assert metadata["siglip"] == {"class_name": "SiglipVisionModel", "hidden_size": 16}
    assert metadata["tone_field"] == {"knots": 8, "curve": "monotone", "feature_channels": 3}
    assert metadata["patch"] == 2
    assert "203 nits" in metadata["colour"]["output"]
    assert sorted(path.name for path in saved["root"].iterdir()) == ["adapters", "base"]


@pytest.mark.parametrize("change, named", [
    (lambda config: FluxTransformer2DModel.from_config({**config, "num_single_layers": 2}),
     "FluxTransformer2DModel with config sha256"),
    (lambda config: RenamedFlux.from_config(config), "RenamedFlux"),
])
def test_another_base_is_refused_naming_the_folder_both_models_and_the_fix(saved, change,
                                                                           named):
    config = dict(saved["pipeline"].transformer.config)
    folder = saved["root"] / "adapters"
    with pytest.raises(ValueError) as error:
        lumaflux_folder.load_lumaflux(folder, change(config))
    message = str(error.value)
    assert str(folder) in message and named in message
    assert "trained on a FluxTransformer2DModel" in message
    assert "train-lumaflux --model" in message


def test_another_siglip_is_refused(saved):
    other = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8))
    with pytest.raises(ValueError, match="SigLIP encoder given is a SiglipVisionModel of "
                                         "hidden size 32"):
        lumaflux_folder.load_lumaflux(saved["root"] / "adapters",
                                      saved["pipeline"].transformer, other)


def test_existing_folder_is_kept_unless_overwrite(saved, tmp_path):
    pipeline = saved["pipeline"]
    folder = tmp_path / "adapters"
    lumaflux_folder.save_lumaflux(folder, pipeline.transformer, _adapter_set(pipeline))
    written = (folder / "lumaflux.safetensors").read_bytes()
    changed = _adapter_set(pipeline)
    changed.head = copy.deepcopy(pipeline.head)
    with torch.no_grad():
        changed.head.projection.bias.add_(1.0)
    with pytest.raises(FileExistsError, match="already exists; .* overwrite=True"):
        lumaflux_folder.save_lumaflux(folder, pipeline.transformer, changed)
    assert (folder / "lumaflux.safetensors").read_bytes() == written
    lumaflux_folder.save_lumaflux(folder, pipeline.transformer, changed, overwrite=True)
    assert (folder / "lumaflux.safetensors").read_bytes() != written
    assert [path.name for path in tmp_path.iterdir()] == ["adapters"]  # no partial left


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "lumaflux.safetensors").unlink(), "has no lumaflux.safetensors"),
    (lambda folder: (folder / "lumaflux.json").write_text('{"format": "other"}'),
     "is format 'other'"),
])
def test_broken_folders_are_refused_naming_the_folder(saved, tmp_path, damage, message):
    folder = tmp_path / "broken"
    lumaflux_folder.save_lumaflux(folder, saved["pipeline"].transformer,
                                  _adapter_set(saved["pipeline"]))
    damage(folder)
    with pytest.raises(ValueError, match=message) as error:
        lumaflux_folder.load_lumaflux(folder, saved["pipeline"].transformer)
    assert str(folder) in str(error.value)
    with pytest.raises(ValueError, match="is not a folder"):
        lumaflux_folder.load_lumaflux(tmp_path / "missing", saved["pipeline"].transformer)
