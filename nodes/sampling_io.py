"""Nodes around ComfyUI's own models: "VAE Decode (unclamped)", "Load Prompt Embeddings" and
"HDR Reference (in-context)".

ComfyUI's stock VAE Decode clamps image VAEs to [0, 1] (comfy/sd.py ``process_output``), which
cuts the toe of a log-encoded picture (LogC3 code values below 0 are negative scene-linear
light) and anything the model put above code 1.0. The unclamped decode runs the same model
with the same batching and tiling fallback, minus that clamp.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import NamedTuple

import torch

from ..hdr.degrade import downscale_reference
from ._common import require_image

CATEGORY_SAMPLING = "HDR/sampling"
# Probes of a VAE's output mapping: both clamp ends, the inside, and the affine points.
_PROBES = [-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0]


def _keep_as_is(pixels):
    """An output mapping that leaves the decoder's pixels alone. It returns the very tensor it
    was given, so it is right under both of ComfyUI's calling conventions: 0.3.x uses the
    mapping's return value, 0.33 discards it and relies on the mapping working in place."""
    return pixels


def _stock_mapping(vae) -> str:
    """How ``vae``'s own output mapping turns decoder output into pixels: ``"identity"`` or
    ``"image"`` (``(x + 1) / 2`` clamped to [0, 1], ComfyUI's image VAEs in comfy/sd.py).
    Probed on a fresh tensor, so in-place mappings touch nothing of ours; any other mapping is
    refused rather than guessed."""
    probe = torch.tensor(_PROBES)
    result = vae.process_output(probe)
    mapped = probe if result is None else result
    if torch.equal(mapped, torch.tensor(_PROBES)):
        return "identity"
    if torch.equal(mapped, torch.tensor(_PROBES).add(1.0).div(2.0).clamp(0.0, 1.0)):
        return "image"
    raise ValueError(
        "vae: its output mapping is neither ComfyUI's image mapping ((x + 1) / 2 clamped) nor "
        f"the identity ({_PROBES} -> {mapped.tolist()}); this ComfyUI or VAE is not supported "
        "by VAE Decode (unclamped): decode with the stock VAE Decode, or report the version")


def decode_unclamped(vae, latent: torch.Tensor) -> torch.Tensor:
    """Decode ``latent`` with ComfyUI's own ``VAE.decode`` (its batching, memory management
    and tiled fallback) and the VAE's own output mapping minus the clamp: inside [0, 1] the
    pixels equal the stock VAE Decode's bit for bit, outside they are kept."""
    mapping = _stock_mapping(vae)
    if mapping == "identity":
        return vae.decode(latent)
    raw = copy.copy(vae)
    raw.process_output = _keep_as_is
    # The stock mapping's own arithmetic, in the same order, without its clamp.
    return raw.decode(latent).add_(1.0).div_(2.0)


class HDRVAEDecodeUnclamped:
    CATEGORY = CATEGORY_SAMPLING
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    DESCRIPTION = ("VAE Decode without the clamp to [0, 1]: use it before Log Decode so the log "
                   "curve's toe and any code values above 1.0 survive.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT", {"tooltip": "The latent to decode."}),
            "vae": ("VAE", {"tooltip": "Any ComfyUI VAE (the same one you would give the stock "
                                       "VAE Decode)."}),
        }}

    def decode(self, samples, vae):
        images = decode_unclamped(vae, samples["samples"])
        if images.ndim == 5:  # video: frames become the batch, as the stock node does
            images = images.reshape(-1, *images.shape[-3:])
        if not bool(torch.isfinite(images).all()):
            raise ValueError("the decoded image contains NaN/Inf; run the VAE in float32 "
                             "(ComfyUI flag --fp32-vae)")
        return (images,)


def _register_folder() -> None:
    import folder_paths

    if "prompt_embeddings" not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths["prompt_embeddings"] = (
            [os.path.join(folder_paths.models_dir, "prompt_embeddings")], {".safetensors"})


def _embedding_files() -> list[str]:
    import folder_paths

    _register_folder()
    return folder_paths.get_filename_list("prompt_embeddings")


def load_prompt_embeddings(path: Path) -> list:
    """A CONDITIONING from a safetensors file: ``prompt_embeds`` [1, tokens, width], optional
    ``prompt_embeds_mask`` [1, tokens] (padding tokens are dropped) and optional
    ``pooled_prompt_embeds`` [1, width2] (names as diffusers pipelines return them)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if "prompt_embeds" not in tensors:
        raise ValueError(f"embeddings {path.name} has tensors {sorted(tensors)}; it needs "
                         "'prompt_embeds' [1, tokens, width] (and optionally "
                         "'pooled_prompt_embeds')")
    embeds = tensors["prompt_embeds"].float()
    if embeds.ndim == 2:
        embeds = embeds[None]
    if embeds.ndim != 3:
        raise ValueError(f"embeddings {path.name}: prompt_embeds has shape "
                         f"{tuple(embeds.shape)}; [1, tokens, width] is needed")
    if "prompt_embeds_mask" in tensors:  # padding a text encoder added: real tokens only
        real = tensors["prompt_embeds_mask"].reshape(-1).bool()
        if real.shape[0] != embeds.shape[1] or not real.any():
            raise ValueError(f"embeddings {path.name}: prompt_embeds_mask "
                             f"{tuple(tensors['prompt_embeds_mask'].shape)} does not mark the "
                             f"real tokens of prompt_embeds {tuple(embeds.shape)}")
        embeds = embeds[:, real]
    options = {}
    if "pooled_prompt_embeds" in tensors:
        options["pooled_output"] = tensors["pooled_prompt_embeds"].float()
    return [[embeds, options]]


class HDRLoadPromptEmbeddings:
    CATEGORY = CATEGORY_SAMPLING
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "load"
    DESCRIPTION = ("Precomputed text-encoder output as CONDITIONING (a safetensors file in "
                   "models/prompt_embeddings with 'prompt_embeds' and optional "
                   "'pooled_prompt_embeds'): for pipelines that cache prompts, and for models "
                   "whose text encoder is not loaded.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "embeddings": (_embedding_files(), {"tooltip": "File in models/prompt_embeddings."}),
        }}

    def load(self, embeddings):
        import folder_paths

        _register_folder()
        return (load_prompt_embeddings(
            Path(folder_paths.get_full_path_or_raise("prompt_embeddings", embeddings))),)


class Arrangement(NamedTuple):
    """How an in-context reference joins one model family's sequence."""

    key: str  # the conditioning entry ComfyUI's model reads
    video: bool  # the family's VAE is a video (Wan-style) VAE
    side_multiple: int  # reference sides in pixels must be multiples of this (x the factor)


REFERENCE_ARRANGEMENTS = {
    "wan: frames after the target": Arrangement("time_dim_concat", True, 16),
    "flux: tokens as image 1": Arrangement("reference_latents", False, 16),
    "qwen-image: tokens as image 1": Arrangement("reference_latents", True, 32),
}
"""How an in-context reference joins the model's sequence, as ``train-lora --mode reference``
trains it (``training/lora_models.py``): Wan's reference latent frames follow the target's
along time (ComfyUI's ``time_dim_concat``: the rotary positions continue, the output keeps
the target's frames); Flux's and Qwen-Image's reference tokens are image 1 (ComfyUI's
``index`` method: Flux ids ``(1, y, x)``; Qwen-Image frame index 1 on the reference's own
centred grid). Sides: 8x VAE x 2x2 patches = 16 pixels; Qwen-Image needs an even token
grid (32 pixels), where ComfyUI's and diffusers' centred positions agree."""
_REFERENCE_KEYS = ("time_dim_concat", "reference_latents")


def reference_conditioning(positive, negative, latent: torch.Tensor, arrangement: str):
    """Both conditionings carrying the clean reference latent ``latent`` (as a VAE encodes
    it) the way ``arrangement`` (a key of :data:`REFERENCE_ARRANGEMENTS`) feeds the model.

    A conditioning that already carries a reference is refused: the LoRA was trained with
    exactly one, in a fixed place.
    """
    import node_helpers

    for conditioning in (positive, negative):
        for _, options in conditioning:
            if any(options.get(key) is not None and len(options[key])
                   for key in _REFERENCE_KEYS):
                raise ValueError("HDR Reference (in-context): the conditioning already "
                                 "carries a reference (from another reference node); an "
                                 "in-context LoRA is trained with exactly one: remove the "
                                 "other one")
    key = REFERENCE_ARRANGEMENTS[arrangement].key
    values = ({key: latent} if key == "time_dim_concat"
              else {key: [latent], "reference_latents_method": "index"})
    return tuple(node_helpers.conditioning_set_values(conditioning, values)
                 for conditioning in (positive, negative))


class HDRInContextReference:
    CATEGORY = CATEGORY_SAMPLING
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "apply"
    DESCRIPTION = ("SDR->HDR with an in-context (IC) LoRA from train-lora --mode reference: the "
                   "SDR picture's clean latent joins the sequence next to the noisy one, as in "
                   "training, on both conditionings. Outputs the empty latent to sample "
                   "(the reference's full size). Decode with VAE Decode (unclamped) + Log "
                   "Decode using the LoRA's curve.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING", {"tooltip": "The prompt (or its embeddings)."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt; it sees the "
                                                     "reference too."}),
            "vae": ("VAE", {"tooltip": "The base model's VAE (the one the LoRA was trained "
                                       "with)."}),
            "reference": ("IMAGE", {"tooltip": "The SDR picture (display-referred sRGB code "
                                               "values in [0, 1], e.g. from Load Image); a "
                                               "batch is a clip (Wan: 1 + 4k frames). "
                                               "Sides: multiples of 16 (Qwen-Image: 32)."}),
            "arrangement": (list(REFERENCE_ARRANGEMENTS), {
                "tooltip": "How the reference joins the sequence; pick the base model's "
                           "family (train-lora trains each this way)."}),
            "reference_downscale_factor": ("INT", {
                "default": 1, "min": 1, "max": 8,
                "tooltip": "The LoRA's reference_downscale_factor (its safetensors metadata "
                           "and hdr_lora.json): the reference is shrunk by it (box filter, "
                           "as in training); the output stays full size. Wan: 1."}),
        }}

    def apply(self, positive, negative, vae, reference, arrangement,
              reference_downscale_factor=1):
        node = "HDR Reference (in-context)"
        image = require_image(reference, "reference", node)[..., :3]
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{node}: reference spans {low:.4g}..{high:.4g}; it must be an "
                             "SDR picture in [0, 1] (tone map scene-linear HDR first, e.g. "
                             "with Tone Map)")
        factor = reference_downscale_factor
        key, video, multiple = REFERENCE_ARRANGEMENTS[arrangement]
        if key == "time_dim_concat" and factor != 1:
            raise ValueError(f"{node}: reference_downscale_factor must be 1 for Wan (its "
                             "reference frames share the target's grid); train-lora refuses "
                             "other factors for Wan too")
        if key == "time_dim_concat" and (len(image) - 1) % 4:
            raise ValueError(f"{node}: reference is a clip of {len(image)} frames; Wan clips "
                             "have 1 + 4k frames (1, 5, 9, ...): trim or extend it")
        height, width = image.shape[1:3]
        if height % (multiple * factor) or width % (multiple * factor):
            raise ValueError(f"{node}: reference is {width}x{height}; both sides must be "
                             f"multiples of {multiple * factor} ({multiple} for "
                             f"{arrangement.split(':')[0]} x reference_downscale_factor): "
                             "crop or scale it (e.g. Upscale Image) first")
        if video != (getattr(vae, "latent_dim", 2) == 3):
            raise ValueError(f"{node}: arrangement '{arrangement}' needs "
                             f"{'a video (Wan-style)' if video else 'an image (Flux)'} VAE; "
                             "pick the arrangement of the VAE's model family")
        if key == "time_dim_concat":  # the batch is a clip: its frames, one latent
            latent = vae.encode(image)
        else:  # each picture its own (one-frame) latent, shrunk as in training
            small = downscale_reference(image, factor)
            latent = torch.cat([vae.encode(picture[None]) for picture in small])
        positive, negative = reference_conditioning(positive, negative, latent, arrangement)
        full = (*latent.shape[:-2], latent.shape[-2] * factor, latent.shape[-1] * factor)
        return positive, negative, {"samples": latent.new_zeros(full)}


NODE_CLASS_MAPPINGS = {"HDRVAEDecodeUnclamped": HDRVAEDecodeUnclamped,
                       "HDRLoadPromptEmbeddings": HDRLoadPromptEmbeddings,
                       "HDRInContextReference": HDRInContextReference}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRVAEDecodeUnclamped": "VAE Decode (unclamped)",
                              "HDRLoadPromptEmbeddings": "Load Prompt Embeddings",
                              "HDRInContextReference": "HDR Reference (in-context)"}
