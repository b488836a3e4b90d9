"""Every node keeps the device and dtype of its IMAGEs, takes bf16/fp16 IMAGEs (or refuses
them clearly) and never modifies an input: the contract of ``tests/_contract.py`` over
every class in ``NODE_CLASS_MAPPINGS``, in-process with ComfyUI 0.3.75's own modules.

The environment is a fresh ComfyUI folder layout in a temp dir (input, output, temp and
model folders registered with ``folder_paths``) holding the harness's tiny models: the
Wan 2.1 set (model, VAE, prompt embeddings) and the HDR set (dual-head HDR VAE, widened
Qwen-Image DiT). The HDR VAE nodes also show it lives under ComfyUI's model management.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import comfy.model_management
import comfy.sd
import folder_paths
import numpy as np
import pytest
import torch
from _contract import check_case
from _node_recipes import recipes
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.example_inputs import write_example_inputs
from comfyui_hdr.harness.tiny_models import write_tiny_hdr_set, write_tiny_wan_set
from comfyui_hdr.nodes import NODE_CLASS_MAPPINGS
from comfyui_hdr.nodes._hdr_vae_memory import ManagedHDRVAE
from comfyui_hdr.nodes.cfa import HDRExposureMasks
from comfyui_hdr.nodes.hdr_vae_nodes import HDRLoadVAE
from comfyui_hdr.nodes.sampling_io import HDRLoadPromptEmbeddings

MODEL_FOLDERS = ("diffusion_models", "vae", "vae_hdr", "prompt_embeddings", "loras")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Folders and tiny models of an in-process ComfyUI; ``folder_paths`` restored after."""
    base = tmp_path_factory.mktemp("comfyui")
    folders = {name: base / name for name in ("input", "output", "temp", "models")}
    for folder in folders.values():
        folder.mkdir()
    saved = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
             folder_paths.get_temp_directory(),
             {name: folder_paths.folder_names_and_paths.get(name) for name in MODEL_FOLDERS})
    folder_paths.set_input_directory(str(folders["input"]))
    folder_paths.set_output_directory(str(folders["output"]))
    folder_paths.set_temp_directory(str(folders["temp"]))
    for name in MODEL_FOLDERS:
        folder_paths.folder_names_and_paths[name] = ([str(folders["models"] / name)], set())
    write_example_inputs(folders["input"])
    np.save(folders["input"] / "plate.npy", np.linspace(0, 8, 2 * 8 * 8 * 3, dtype=np.float32)
            .reshape(2, 8, 8, 3))
    wan, hdr = write_tiny_wan_set(folders["models"]), write_tiny_hdr_set(folders["models"])
    (folders["models"] / "loras").mkdir()
    save_file({"lora": torch.zeros(1)}, str(folders["models"] / "loras" / "loggamma.safetensors"),
              metadata={"hdr_transform": "loggamma", "hdr_lora": json.dumps(
                  {"curve": {"name": "loggamma", "parameters": {"ceiling": 1000.0}}})})
    models = folders["models"]
    wan_vae = comfy.sd.VAE(sd=load_file(str(models / "vae" / wan["vae"])))
    wan_model = comfy.sd.load_diffusion_model(str(models / "diffusion_models" / wan["model"]))
    hdr_vae = HDRLoadVAE().load(hdr["vae"])[0]

    def conditioning(role: str):
        return HDRLoadPromptEmbeddings().load(wan[role])[0]

    def masks(frames: int):
        clip = torch.rand((frames, 64, 64, 3), generator=torch.Generator().manual_seed(13))
        return HDRExposureMasks().detect(clip, 0.95, 0.01, 0.7, 0.2)[0]

    def wan_latent(frames: int = 2):
        return torch.randn((1, 16, frames, 8, 8), generator=torch.Generator().manual_seed(14))

    def hdr_latent():
        return torch.randn((1, 32, 4, 6), generator=torch.Generator().manual_seed(15))

    yield SimpleNamespace(output=folders["output"], temp=folders["temp"], npy="plate.npy",
                          wan=wan, hdr=hdr, wan_vae=wan_vae, wan_model=wan_model,
                          hdr_vae=hdr_vae, conditioning=conditioning, masks=masks,
                          wan_latent=wan_latent, hdr_latent=hdr_latent)
    folder_paths.set_input_directory(saved[0])
    folder_paths.set_output_directory(saved[1])
    folder_paths.set_temp_directory(saved[2])
    for name, entry in saved[3].items():
        if entry is None:
            folder_paths.folder_names_and_paths.pop(name, None)
        else:
            folder_paths.folder_names_and_paths[name] = entry


NODES = sorted(NODE_CLASS_MAPPINGS)


def test_every_node_has_a_recipe(env):
    assert sorted(recipes(env)) == NODES
    assert len(NODES) >= 32


@pytest.mark.parametrize("name", NODES)
def test_node_keeps_device_and_dtype_takes_half_images_and_never_modifies_inputs(
        name, device, env):
    check_case(recipes(env)[name](device), name)


def test_hdr_vae_is_loaded_and_offloaded_by_comfyuis_model_management(env, device):
    managed = env.hdr_vae
    assert isinstance(managed, ManagedHDRVAE)
    comfy.model_management.unload_all_models()
    assert not any(loaded.model is managed.patcher
                   for loaded in comfy.model_management.current_loaded_models)
    image = torch.rand((1, 32, 32, 3), generator=torch.Generator().manual_seed(16)).to(device)
    NODE_CLASS_MAPPINGS["HDRVAEEncode"]().encode(image, managed)
    (loaded,) = [entry for entry in comfy.model_management.current_loaded_models
                 if entry.model is managed.patcher]
    load_device = comfy.model_management.vae_device()
    assert managed.patcher.load_device == load_device
    assert managed.vae.device.type == load_device.type
    comfy.model_management.unload_all_models()
    assert managed.vae.device == comfy.model_management.vae_offload_device()
    assert loaded not in comfy.model_management.current_loaded_models


def test_hdr_vae_asks_for_the_memory_its_pass_needs(env):
    managed = env.hdr_vae
    width = managed.vae.config.block_out_channels[0]
    # 1024 x 1024, whole frame: ComfyUI's AutoencoderKL decode estimate (2178 values per
    # pixel at width 128) scaled to this VAE's width, plus the second head's RGB, float32.
    pixels = 1024 * 1024
    assert managed.memory_required(1, 1024, 1024, None, encode=False) == int(
        (2178 * width / 128 * pixels + 3 * pixels) * 4)
    # Tiled at 64 latent pixels (512 px): three resident frames of the first block's width
    # and one 512 x 512 tile of the whole-frame estimate.
    tiled = managed.memory_required(1, 1024, 1024, 64, encode=True)
    assert tiled == int((3 * width * pixels + 1767 * width / 128 * 512 * 512) * 4)
    assert tiled < managed.memory_required(1, 1024, 1024, None, encode=True)


def test_tiled_hdr_vae_encode_node_equals_the_whole_frame_encode(env, device):
    # The node's auto tiling (512 px tiles above 512 px) and an explicit tile size give the
    # whole-frame latent to float32 rounding (tests/unit/test_hdr_vae.py measures the
    # library: 2e-5 from a float64 oracle, 9.4e-5 for the whole-frame float32 encode).
    image = torch.rand((1, 48, 64, 3), generator=torch.Generator().manual_seed(17)) * 8
    encode = NODE_CLASS_MAPPINGS["HDRVAEEncode"]().encode
    whole = encode(image.to(device), env.hdr_vae, tile_size=0)[0]["samples"]
    tiled = encode(image.to(device), env.hdr_vae, tile_size=16)[0]["samples"]
    assert tiled.shape == whole.shape == (1, 32, 6, 8)
    assert (tiled - whole).abs().max().item() <= 2e-4


def test_hdr_vae_nodes_refuse_a_vae_that_did_not_come_from_load_hdr_vae(env):
    with pytest.raises(ValueError, match="hdr_vae must come from Load HDR VAE"):
        NODE_CLASS_MAPPINGS["HDRVAEEncode"]().encode(torch.rand(1, 16, 16, 3),
                                                      env.hdr_vae.vae)
