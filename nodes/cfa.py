"""CFA nodes: "Exposure Masks", "CFA Patch" and "CFA Sampler" (DiffHDR's context-focused
cross-attention: an over-exposed prompt for the blown-out regions, an under-exposed one for
the crushed shadows)."""

from __future__ import annotations

import torch

from ..hdr import masks as exposure
from ..hdr.masks import DIFFHDR_MASKS, ExposureMasks
from ..hdr.models.cfa import ALPHA_RANGE
from ..hdr.prompts import parse_exposure_prompt
from ..hdr.windows import DIFFHDR_WINDOWS, blend_weights, stride_for_overlap, window_starts
from ._cfa_patch import SUPPORTED_MODELS, WAN_TEMPORAL_COMPRESSION, apply_cfa_patch
from ._common import require_image

CATEGORY_CFA = "HDR/sampling"
EXPOSURE_MASKS = "EXPOSURE_MASKS"
_DIFFHDR_STRIDE = stride_for_overlap(DIFFHDR_WINDOWS.frames, DIFFHDR_WINDOWS.overlap)


class HDRExposureMasks:
    CATEGORY = CATEGORY_CFA
    RETURN_TYPES = (EXPOSURE_MASKS, "MASK", "MASK")
    RETURN_NAMES = ("masks", "over_mask", "under_mask")
    FUNCTION = "detect"
    DESCRIPTION = ("DiffHDR's over- and under-exposure masks of an LDR clip (sRGB frames in "
                   "batch order): soft luminance/clip tests, temporal smoothing, morphology.")

    @classmethod
    def INPUT_TYPES(cls):
        d = DIFFHDR_MASKS
        return {"required": {
            "image": ("IMAGE", {"tooltip": "LDR frames, sRGB-encoded 0..1, in time order."}),
            "over_threshold": ("FLOAT", {"default": d.over_threshold, "min": 0.5, "max": 1.0,
                                         "step": 0.005, "tooltip": "sRGB code value from "
                                         "which luminance counts as blown out."}),
            "under_threshold": ("FLOAT", {"default": d.under_threshold, "min": 0.0, "max": 0.5,
                                          "step": 0.005, "tooltip": "sRGB code value below "
                                          "which luminance counts as crushed."}),
            "ema_alpha": ("FLOAT", {"default": d.ema_alpha, "min": 0.05, "max": 1.0,
                                    "step": 0.05, "tooltip": "Temporal smoothing: weight of "
                                    "the current frame (1 = no smoothing)."}),
            "binarise_threshold": ("FLOAT", {"default": d.binarise_threshold, "min": 0.01,
                                             "max": 0.99, "step": 0.01, "tooltip": (
                                                 "Smoothed values above this are in a mask.")}),
        }}

    def detect(self, image, over_threshold, under_threshold, ema_alpha, binarise_threshold):
        frames = require_image(image, "image", "Exposure Masks")[..., :3]
        found = exposure.exposure_masks(frames, over_threshold=over_threshold,
                                        under_threshold=under_threshold, ema_alpha=ema_alpha,
                                        binarise_threshold=binarise_threshold)
        return (found, found.over, found.under)


def _strength(name: str):
    low, high = ALPHA_RANGE
    return ("FLOAT", {"default": 1.0, "min": low, "max": high, "step": 0.05, "tooltip": (
        f"How strongly the {name} prompt replaces the base prompt inside its mask (0 off, 1 "
        f"replace, up to {high:g} to exaggerate; DiffHDR tests 1, 3 and 5).")})


def _check_masks(masks) -> ExposureMasks:
    if not isinstance(masks, ExposureMasks):
        raise ValueError("masks must come from the Exposure Masks node")
    return masks


class HDRCFAPatch:
    CATEGORY = CATEGORY_CFA
    RETURN_TYPES = ("MODEL",)
    OUTPUT_NODE = False
    FUNCTION = "patch"
    DESCRIPTION = ("Routes an 'over-exposed' prompt to the blown-out regions and an "
                   "'under-exposed' prompt to the crushed shadows (DiffHDR CFA) inside the "
                   "model's text attention. Works with any sampler and stacks with LoRAs. "
                   f"Supported: {'; '.join(SUPPORTED_MODELS)}.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "Wan 2.1/2.2 text-to-video or Flux.1."}),
                "masks": (EXPOSURE_MASKS, {"tooltip": "From Exposure Masks, for the frames "
                                                      "being sampled."}),
                "alpha_over": _strength("over-exposed"),
                "alpha_under": _strength("under-exposed"),
            },
            "optional": {
                "over": ("CONDITIONING", {"tooltip": "Prompt for the blown-out regions; "
                                                     "unconnected = that branch off."}),
                "under": ("CONDITIONING", {"tooltip": "Prompt for the crushed shadows; "
                                                      "unconnected = that branch off."}),
            },
        }

    def patch(self, model, masks, alpha_over, alpha_under, over=None, under=None):
        patched = apply_cfa_patch(model, over, under, _check_masks(masks), alpha_over,
                                  alpha_under)
        return {"ui": {"text": _branch_notes(over, under, alpha_over, alpha_under)},
                "result": (patched,)}


def _branch_notes(over, under, alpha_over: float, alpha_under: float) -> list[str]:
    """What the UI says about branches that are off (no prompt, or strength 0)."""
    notes = []
    for name, cond, alpha in (("over-exposed", over, alpha_over),
                              ("under-exposed", under, alpha_under)):
        if not cond:
            notes.append(f"{name} branch off: no prompt connected")
        elif alpha == 0:
            notes.append(f"{name} branch off: strength 0")
    return notes or ["over- and under-exposed branches on"]


def _encode(clip, text: str | None):
    if not text:
        return None
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def _sample(model, positive, negative, latent: torch.Tensor, seed: int, steps: int, cfg: float,
            sampler_name: str, scheduler: str, denoise: float, noise_mask=None):
    import comfy.sample
    import comfy.utils
    import latent_preview

    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed, None)
    callback = latent_preview.prepare_callback(model, steps)
    return comfy.sample.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
        denoise=denoise, noise_mask=noise_mask, callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


class HDRCFASampler:
    CATEGORY = CATEGORY_CFA
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    DESCRIPTION = ("KSampler with CFA exposure routing. Prompts: connect 'over'/'under' "
                   "CONDITIONINGs, or a CLIP and a structured prompt '[Overexposed: ...]; "
                   "[Underexposed: ...]'. Long video: windows of window_frames with "
                   "window_stride, blended linearly in latent space (0 = one pass).")

    @classmethod
    def INPUT_TYPES(cls):
        import comfy.samplers

        return {
            "required": {
                "model": ("MODEL", {"tooltip": "Wan 2.1/2.2 text-to-video or Flux.1."}),
                "positive": ("CONDITIONING", {"tooltip": "The base prompt."}),
                "negative": ("CONDITIONING", {"tooltip": "The negative prompt."}),
                "latent_image": ("LATENT", {"tooltip": "Latent of the clip to re-expose (or "
                                                       "an empty latent)."}),
                "masks": (EXPOSURE_MASKS, {"tooltip": "From Exposure Masks, one per frame."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "control_after_generate": True,
                                 "tooltip": "Noise seed."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                                  "tooltip": "Sampling steps."}),
                "cfg": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance scale."}),
                "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {"tooltip": "Sampler."}),
                "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"tooltip": "Scheduler."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "How much of the input latent is re-noised."}),
                "alpha_over": _strength("over-exposed"),
                "alpha_under": _strength("under-exposed"),
                "window_frames": ("INT", {
                    "default": DIFFHDR_WINDOWS.frames, "min": 0, "max": 1025, "step": 1,
                    "tooltip": "Pixel frames per window for long video (33 in DiffHDR); 0 = "
                               "the whole clip in one pass. A clip no longer than a window "
                               "is sampled in one pass either way."}),
                "window_stride": ("INT", {
                    "default": _DIFFHDR_STRIDE, "min": 4, "max": 1024, "step": 4,
                    "tooltip": "Pixel frames between window starts, a multiple of 4 (Wan's "
                               "latent frames). 28 = DiffHDR's 33-frame windows overlapping "
                               "by 8 frames (2 latent frames); window_frames - stride + 1 "
                               "frames are shared in general."}),
            },
            "optional": {
                "over": ("CONDITIONING", {"tooltip": "Prompt for the blown-out regions."}),
                "under": ("CONDITIONING", {"tooltip": "Prompt for the crushed shadows."}),
                "clip": ("CLIP", {"tooltip": "Text encoder for the structured prompt."}),
                "structured_prompt": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "'[Overexposed: ...]; [Underexposed: ...]' (encoded with clip; fills the "
                    "over/under prompts not connected).")}),
            },
        }

    def sample(self, model, positive, negative, latent_image, masks, seed, steps, cfg,
               sampler_name, scheduler, denoise, alpha_over, alpha_under, window_frames,
               window_stride, over=None, under=None, clip=None, structured_prompt=""):
        masks = _check_masks(masks)
        if structured_prompt.strip():
            if clip is None:
                raise ValueError("structured_prompt needs a clip to encode it; connect the "
                                 "model's text encoder or use the over/under inputs")
            parsed = parse_exposure_prompt(structured_prompt)
            over = over if over is not None else _encode(clip, parsed.over)
            under = under if under is not None else _encode(clip, parsed.under)
        latent = latent_image["samples"]
        if window_frames == 0 or latent.ndim != 5:
            patched = apply_cfa_patch(model, over, under, masks, alpha_over, alpha_under)
            samples = _sample(patched, positive, negative, latent, seed, steps, cfg,
                              sampler_name, scheduler, denoise, latent_image.get("noise_mask"))
        else:
            samples = self._windows(model, positive, negative, latent, masks, seed, steps, cfg,
                                    sampler_name, scheduler, denoise, alpha_over, alpha_under,
                                    window_frames, window_stride, over, under,
                                    latent_image.get("noise_mask"))
        return {"ui": {"text": _branch_notes(over, under, alpha_over, alpha_under)},
                "result": ({**latent_image, "samples": samples},)}

    @staticmethod
    def _windows(model, positive, negative, latent, masks, seed, steps, cfg, sampler_name,
                 scheduler, denoise, alpha_over, alpha_under, window_frames, window_stride,
                 over, under, noise_mask=None):
        """Sample overlapping windows of latent frames and blend them. A ``noise_mask`` (the
        LATENT's, as Set Latent Noise Mask makes it) is first resized to the whole latent as
        the sampler would (``comfy.utils.reshape_mask``), then cut into the same windows, so
        each window keeps the input latent where the mask is 0, as KSampler does."""
        import comfy.utils

        if noise_mask is not None:
            noise_mask = comfy.utils.reshape_mask(noise_mask,
                                                  (latent.shape[0], 1, *latent.shape[2:]))
        c = WAN_TEMPORAL_COMPRESSION
        window, stride = (window_frames - 1) // c + 1, max(1, window_stride // c)
        length = latent.shape[2]
        window = min(window, length)
        starts = window_starts(length, window, stride)
        weights = blend_weights(length, starts, window, device=latent.device)
        blended = None
        for start, weight in zip(starts, weights, strict=True):
            first = start * c
            count = (window - 1) * c + 1
            window_masks = ExposureMasks(masks.over[first:first + count],
                                         masks.under[first:first + count])
            patched = apply_cfa_patch(model, over, under, window_masks, alpha_over,
                                      alpha_under)
            part = _sample(patched, positive, negative, latent[:, :, start:start + window],
                           seed, steps, cfg, sampler_name, scheduler, denoise,
                           None if noise_mask is None else noise_mask[:, :, start:start + window])
            if blended is None:  # on the sampler's output device, in its dtype
                blended = part.new_zeros((*part.shape[:2], length, *part.shape[3:]))
            blended[:, :, start:start + window] += part * weight.to(part).view(1, 1, -1, 1, 1)
        return blended


NODE_CLASS_MAPPINGS = {"HDRExposureMasks": HDRExposureMasks, "HDRCFAPatch": HDRCFAPatch,
                       "HDRCFASampler": HDRCFASampler}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRExposureMasks": "Exposure Masks", "HDRCFAPatch": "CFA Patch",
                              "HDRCFASampler": "CFA Sampler"}
