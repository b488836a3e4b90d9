"""The dual-head HDR VAE in ComfyUI: "Load HDR VAE", "HDR VAE Encode", "HDR VAE Decode" and
"Empty HDR Latent".

The VAE (``hdr/models/hdr_vae.py``) encodes scene-linear light to one 32-channel latent and
decodes it twice: a scene-linear picture (unclamped) and a display picture (sRGB code
values). It always runs in float32 (TF32 off; bf16/fp16 IMAGEs are encoded in float32).
Its latents are ordinary LATENTs with 32 channels; a video-shaped latent
``[B, C, T, H, W]`` (what samplers return for Qwen-Image and Wan) is decoded frame by frame
into the batch. The model code (diffusers) is imported on first use, so loading the pack
stays fast.

The VAE lives under ComfyUI's model management, like the stock VAE: "Load HDR VAE"
wraps it in a ``comfy.model_patcher.ModelPatcher`` (:class:`ManagedHDRVAE`), and every
encode and decode first calls ``comfy.model_management.load_models_gpu`` with the memory
it will need, so other models are offloaded to make room, and the VAE itself is offloaded
when a sampler needs the card (``--lowvram``, ``--novram`` and ``--cpu-vae`` apply).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ._common import require_image
from ._hdr_vae_memory import ManagedHDRVAE
from ._preview import hdr_view

CATEGORY_MODELS = "HDR/models"
HDR_VAE = "HDR_VAE"
FOLDER = "vae_hdr"
AUTO_TILE_LATENT = 64  # latent pixels per tile edge when tile_size is 0 (512 px at 8x)


def _tile_input(verb: str) -> tuple:
    return ("INT", {"default": 0, "min": 0, "max": 8192, "step": 64, "tooltip": (
        f"Tile edge in pixels for large frames (less memory, same pixels: tiles {verb} with "
        "whole-frame statistics); 0 = whole frame up to 512 px, 512 px tiles above.")})


def _tile(tile_size: int, factor: int, latent_height: int, latent_width: int) -> int | None:
    """Tile edge in latent pixels, or None for a whole-frame pass."""
    if tile_size:
        return max(tile_size // factor, 1)
    return AUTO_TILE_LATENT if max(latent_height, latent_width) > AUTO_TILE_LATENT else None


def register_folder() -> None:
    """Register ``models/vae_hdr`` with ComfyUI's folder_paths (extra_model_paths may add more)."""
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = (
            [os.path.join(folder_paths.models_dir, FOLDER)], set())


def vae_directories() -> list[str]:
    """Every directory holding a config.json under the vae_hdr folders, relative to them
    (after ``""``, the choice for a VAE given by path)."""
    import folder_paths

    register_folder()
    names = set()
    for base in folder_paths.get_folder_paths(FOLDER):
        root = Path(base)
        if root.is_dir():
            names.update(config.parent.relative_to(root).as_posix()
                         for config in root.rglob("config.json") if config.parent != root)
    return ["", *sorted(names)]


def _vae_path(vae_name: str, path: str) -> Path:
    import folder_paths

    register_folder()
    if path.strip():
        named = Path(path.strip()).expanduser()
        if named.is_absolute():
            return named
        return Path(folder_paths.get_folder_paths(FOLDER)[0]) / named
    if not vae_name:
        raise ValueError(f"vae_name is empty and no path is given; put an HDR VAE folder in "
                         f"models/{FOLDER} or type its path")
    for base in folder_paths.get_folder_paths(FOLDER):
        if (Path(base) / vae_name).is_dir():
            return Path(base) / vae_name
    raise ValueError(f"vae_name {vae_name!r} is not a directory under models/{FOLDER}; put the "
                     "folder HDRAutoencoder.save_pretrained wrote there, or type a path")


def _require_vae(vae) -> ManagedHDRVAE:
    if not isinstance(vae, ManagedHDRVAE):
        raise ValueError(f"hdr_vae must come from Load HDR VAE, got {type(vae).__name__}")
    return vae


def _frames(samples: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` float32 latent; video latents ``[B, C, T, H, W]`` put T in the batch."""
    if not isinstance(samples, torch.Tensor) or samples.ndim not in (4, 5):
        shape = tuple(getattr(samples, "shape", ()))
        raise ValueError(f"samples must be a LATENT [batch, channels, height, width] (or with "
                         f"frames), got {shape}")
    if samples.ndim == 5:
        samples = samples.movedim(2, 1).flatten(0, 1)
    return samples.float()


class HDRLoadVAE:
    CATEGORY = CATEGORY_MODELS
    RETURN_TYPES = (HDR_VAE,)
    RETURN_NAMES = ("hdr_vae",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads a dual-head HDR VAE (a diffusers folder: config.json + safetensors) "
                   "from models/vae_hdr, in float32, under ComfyUI's model management (moved "
                   "to the GPU when it encodes or decodes, offloaded when other models need "
                   "the memory). Pickle checkpoints are refused.")

    @classmethod
    def INPUT_TYPES(cls):
        names = vae_directories()
        return {
            "required": {
                "vae_name": (names, {"default": next(iter(names[1:]), ""), "tooltip": (
                    "A folder under models/vae_hdr holding config.json and the weights "
                    "(ignored when 'path' is set).")}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": (
                    "A VAE folder elsewhere: absolute, or relative to models/vae_hdr (e.g. a "
                    "train-vae output folder).")}),
            },
        }

    def load(self, vae_name, path=""):
        from ..hdr.models.hdr_vae import load_hdr_vae

        return (ManagedHDRVAE(load_hdr_vae(_vae_path(vae_name, path))),)


class HDRVAEEncode:
    CATEGORY = CATEGORY_MODELS
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    DESCRIPTION = ("Encodes a scene-linear IMAGE to the HDR VAE's 32-channel LATENT (the "
                   "posterior's mode: deterministic, no sampling noise), in float32 (bf16/fp16 "
                   "IMAGEs are widened). Alpha is ignored. Large frames encode in tiles equal "
                   "to the whole-frame encode.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear RGB (1.0 = diffuse white, values above "
                                           "1 kept); width and height multiples of 8."}),
            "hdr_vae": (HDR_VAE, {"tooltip": "From Load HDR VAE."}),
        }, "optional": {"tile_size": _tile_input("encode")}}

    def encode(self, image, hdr_vae, tile_size=0):
        import comfy.model_management
        import comfy.utils

        managed = _require_vae(hdr_vae)
        vae = managed.vae
        rgb = require_image(image, "image", "HDR VAE Encode")[..., :3]
        factor = vae.spatial_compression_ratio
        if rgb.shape[1] % factor or rgb.shape[2] % factor:
            raise ValueError(f"image is {rgb.shape[2]}x{rgb.shape[1]}; HDR VAE Encode needs a "
                             f"width and height that are multiples of {factor}: crop or pad it")
        tile = _tile(tile_size, factor, rgb.shape[1] // factor, rgb.shape[2] // factor)
        device = managed.load(*rgb.shape[:3], tile, encode=True)
        progress = comfy.utils.ProgressBar(1)
        with torch.no_grad():
            pixels = rgb.movedim(-1, 1).to(device=device, dtype=torch.float32)
            posterior = (vae.encode(pixels) if tile is None
                         else vae.encode_tiled(pixels, tile, progress.update_absolute))
        progress.update_absolute(progress.total)
        latent = posterior.mode().to(comfy.model_management.intermediate_device())
        return ({"samples": latent},)


class HDRVAEDecode:
    CATEGORY = CATEGORY_MODELS
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("scene_linear", "display")
    FUNCTION = "decode"
    DESCRIPTION = ("Decodes a 32-channel HDR latent through both heads of one VAE: scene-linear "
                   "light (unclamped, for Save EXR) and the display picture (sRGB, 0..1), "
                   "pixel-aligned. Large frames decode in tiles equal to the whole-frame "
                   "decode (no seams).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT", {"tooltip": "A 32-channel HDR latent (Empty HDR Latent, HDR "
                                              "VAE Encode or a sampler with an HDR model)."}),
            "hdr_vae": (HDR_VAE, {"tooltip": "From Load HDR VAE."}),
            "tile_size": _tile_input("decode"),
        }}

    def decode(self, samples, hdr_vae, tile_size):
        import comfy.model_management
        import comfy.utils

        managed = _require_vae(hdr_vae)
        vae = managed.vae
        latent = _frames(samples["samples"])
        factor = vae.spatial_compression_ratio
        tile = _tile(tile_size, factor, *latent.shape[-2:])
        device = managed.load(latent.shape[0], latent.shape[2] * factor,
                              latent.shape[3] * factor, tile, encode=False)
        progress = comfy.utils.ProgressBar(1)
        with torch.no_grad():
            latent = latent.to(device)
            decoded = (vae.decode(latent) if tile is None
                       else vae.decode_tiled(latent, tile, progress.update_absolute))
        progress.update_absolute(progress.total)
        output = comfy.model_management.intermediate_device()
        linear = decoded.linear.movedim(1, -1).to(output)
        display = ((decoded.display.movedim(1, -1).to(output) + 1.0) / 2.0).clamp(0.0, 1.0)
        return {"ui": hdr_view(linear, display, label="HDR VAE Decode"),
                "result": (linear, display)}


class HDREmptyLatent:
    CATEGORY = CATEGORY_MODELS
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    DESCRIPTION = ("An empty 32-channel HDR latent for text-to-image sampling with an HDR "
                   "(widened) diffusion model: the VAE's mean latent when the VAE has latent "
                   "statistics (the diffusion model's zero), else all zero. Width and height "
                   "round down to the VAE's compression.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 1024, "min": 16, "max": 16384, "step": 8,
                                  "tooltip": "Picture width in pixels."}),
                "height": ("INT", {"default": 1024, "min": 16, "max": 16384, "step": 8,
                                   "tooltip": "Picture height in pixels."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                       "tooltip": "Pictures in the batch."}),
            },
            "optional": {
                "hdr_vae": (HDR_VAE, {"tooltip": (
                    "The VAE that will decode it: its compression and latent channels are "
                    "used (unconnected: 8x and 32 channels).")}),
            },
        }

    def generate(self, width, height, batch_size, hdr_vae=None):
        import comfy.model_management

        factor, channels, stats = 8, 32, None
        if hdr_vae is not None:
            vae = _require_vae(hdr_vae).vae
            factor, channels = vae.spatial_compression_ratio, vae.config.latent_channels
            stats = vae.latent_stats
        shape = (batch_size, channels, height // factor, width // factor)
        device = comfy.model_management.intermediate_device()
        samples = torch.zeros(shape, device=device)
        if stats is not None:  # the DiT's zero, (z - mean) / std = 0, in the VAE's latent
            samples = stats.process_out(samples)
        return ({"samples": samples},)


NODE_CLASS_MAPPINGS = {"HDRLoadVAE": HDRLoadVAE, "HDRVAEEncode": HDRVAEEncode,
                       "HDRVAEDecode": HDRVAEDecode, "HDREmptyLatent": HDREmptyLatent}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRLoadVAE": "Load HDR VAE", "HDRVAEEncode": "HDR VAE Encode",
                              "HDRVAEDecode": "HDR VAE Decode",
                              "HDREmptyLatent": "Empty HDR Latent"}
