""""Load HDR Diffusion Model": a DiT widened to the HDR VAE's 32-channel latent as a MODEL.

The stock Load Diffusion Model would detect a widened checkpoint as a 16-channel model (or
fail to build it); this loader builds ComfyUI's own model class from the checkpoint's
shapes and its model card with a 32-channel latent format (see ``_hdr_model``), so the
stock KSampler, schedulers and LoRA loaders work on it unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ._hdr_model import WEIGHT_DTYPES, load_hdr_diffusion_model
from .hdr_vae_nodes import CATEGORY_MODELS

FOLDER = "diffusion_models"


def _checkpoints() -> list[str]:
    import folder_paths

    return [name for name in folder_paths.get_filename_list(FOLDER)
            if name.lower().endswith(".safetensors")]


class HDRLoadDiffusionModel:
    CATEGORY = CATEGORY_MODELS
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads a Qwen-Image, Flux.1 or Wan 2.1 diffusion model widened to the HDR "
                   "VAE's 32 latent channels (safetensors in models/diffusion_models, with its "
                   "<name>.json model card when the training side wrote one) as a MODEL for "
                   "the stock KSampler.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "unet_name": (_checkpoints(), {"tooltip": (
                "A widened checkpoint in models/diffusion_models (safetensors only; the "
                "stock Load Diffusion Model loads 16-channel ones).")}),
            "weight_dtype": (list(WEIGHT_DTYPES), {"default": "default", "tooltip": (
                "Weight precision: default lets ComfyUI choose for the device; bfloat16 halves "
                "the memory. The HDR VAE stays float32 either way.")}),
        }}

    def load(self, unet_name, weight_dtype):
        import folder_paths

        path = Path(folder_paths.get_full_path_or_raise(FOLDER, unet_name))
        return (load_hdr_diffusion_model(path, WEIGHT_DTYPES[weight_dtype]),)


NODE_CLASS_MAPPINGS = {"HDRLoadDiffusionModel": HDRLoadDiffusionModel}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRLoadDiffusionModel": "Load HDR Diffusion Model"}
