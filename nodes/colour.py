"""Colour nodes: "Log Encode", "Log Decode", "Log Decode (LoRA's curve)" and "Convert Gamut".

The curve menu is :data:`hdr.transfer.CURVES`; each curve reads only the settings it has
(the tooltips say which), so one node covers every encoding. "Log Decode (LoRA's curve)"
reads the curve and its parameters (log-gamma's M) from a train-lora LoRA's metadata.
"""

from __future__ import annotations

import json

from ..hdr import gamut, transfer
from ._common import CATEGORY_COLOUR, join_alpha, require_image, split_alpha

CURVE_NAMES = list(transfer.CURVES)
GAMUT_NAMES = list(gamut.GAMUTS)
ADAPTATIONS = ["bradford", "cat02", "none"]


def _curve_settings():
    return {
        "exposure_index": (
            [str(ei) for ei in transfer.LOGC3_EXPOSURE_INDICES],
            {"default": "800", "tooltip": "LogC3 only: the camera's exposure index (EI). Each EI "
                                          "has its own curve in ARRI's tables."},
        ),
        "nits_at_1": ("FLOAT", {
            "default": 203.0, "min": 1.0, "max": 10000.0, "step": 1.0,
            "tooltip": "PQ and HLG only: display nits that scene-linear 1.0 (diffuse white) is "
                       "shown at. 203 is ITU-R BT.2408's HDR reference white.",
        }),
        "peak_nits": ("FLOAT", {
            "default": 1000.0, "min": 100.0, "max": 10000.0, "step": 10.0,
            "tooltip": "HLG only: peak luminance of the display the signal is made for; sets "
                       "the system gamma (BT.2100: 1.2 at 1000 nits).",
        }),
        "mu": ("FLOAT", {
            "default": 5000.0, "min": 1.0, "max": 1e6, "step": 1.0,
            "tooltip": "mu-law only: compression strength (HDR metrics use 5000, GMODiff 100). "
                       "Input 1.0 maps to code 1.0.",
        }),
        "gamma": ("FLOAT", {
            "default": transfer.LOGGAMMA.gamma, "min": 0.1, "max": 10.0, "step": 0.1,
            "tooltip": "log-gamma only: the curve's exponent (DiffHDR: 2.2).",
        }),
        "ceiling": ("FLOAT", {
            "default": transfer.LOGGAMMA.ceiling, "min": 1.0, "max": 1e6, "step": 1.0,
            "tooltip": "log-gamma only: M, the scene-linear value that encodes to 1.0: 1000 "
                       "(DiffHDR's implementation README, about 10 stops over diffuse "
                       "white) or 65536 (DiffHDR's code, and LoRAs trained before M was a "
                       "setting). Use the M the LoRA was trained with (its hdr_lora.json).",
        }),
    }


def _curve_inputs(image_tooltip: str):
    labels = "; ".join(f"{c.name} = {c.label} (code 1.0 = {c.linear_max:.6g})"
                       for c in transfer.CURVES.values())
    return {
        "required": {
            "image": ("IMAGE", {"tooltip": image_tooltip}),
            "curve": (CURVE_NAMES, {"default": "logc4", "tooltip": f"Encoding: {labels}."}),
        },
        "optional": _curve_settings(),
    }


def _curve_call(direction: str, image, curve: str, node: str, settings: dict):
    rgb, alpha = split_alpha(require_image(image, "image", node))
    chosen = transfer.get_curve(curve)
    arguments = {name: settings[name] for name in chosen.parameters if name in settings}
    if "exposure_index" in arguments:
        arguments["exposure_index"] = int(arguments["exposure_index"])
    function = chosen.encode if direction == "encode" else chosen.decode
    return (join_alpha(function(rgb, **arguments), alpha),)


class HDRLogEncode:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "encode"
    DESCRIPTION = ("Scene-linear light to code values of a camera log or HDR curve, so the stock "
                   "VAE, samplers and LoRAs see an ordinary [0, 1] image. Nothing is clamped: "
                   "values beyond the curve's range encode above 1.0.")

    @classmethod
    def INPUT_TYPES(cls):
        return _curve_inputs("Scene-linear image (1.0 = diffuse white, 0.18 = mid grey).")

    def encode(self, image, curve, **settings):
        return _curve_call("encode", image, curve, "Log Encode", settings)


class HDRLogDecode:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    DESCRIPTION = ("Code values of a camera log or HDR curve back to scene-linear light, with "
                   "the curve's toe and negatives intact. Use it after an unclamped VAE decode.")

    @classmethod
    def INPUT_TYPES(cls):
        return _curve_inputs("Code values in the chosen curve (usually about 0..1).")

    def decode(self, image, curve, **settings):
        return _curve_call("decode", image, curve, "Log Decode", settings)


class HDRLoraLogDecode:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("image", "curve")
    FUNCTION = "decode"
    DESCRIPTION = ("Log Decode with the curve a train-lora LoRA was trained with, read from "
                   "the LoRA file's hdr_lora metadata (curve and parameters, e.g. log-gamma's "
                   "M), so decoding matches training. LoRAs from before M was a setting "
                   "decode log-gamma with M = 65536, as they were trained.")

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {
            "image": ("IMAGE", {"tooltip": "Code values from VAE Decode (unclamped)."}),
            "lora_name": (folder_paths.get_filename_list("loras"), {
                "tooltip": "The LoRA the image was sampled with (comfyui_lora.safetensors "
                           "from train-lora, in models/loras)."}),
        }}

    def decode(self, image, lora_name):
        import folder_paths
        from safetensors import safe_open

        path = folder_paths.get_full_path_or_raise("loras", lora_name)
        with safe_open(path, framework="pt") as stored:
            metadata = stored.metadata() or {}
        mapping = (json.loads(metadata["hdr_lora"]) if "hdr_lora" in metadata
                   else {"hdr_transform": metadata.get("hdr_transform")})
        try:
            curve = transfer.lora_curve(mapping)
        except ValueError as error:
            raise ValueError(f"Log Decode (LoRA's curve): lora_name {lora_name}: {error} Use "
                             "Log Decode with the curve it was trained with") from None
        rgb, alpha = split_alpha(require_image(image, "image", "Log Decode (LoRA's curve)"))
        settings = ", ".join(f"{name} {value:g}" for name, value in curve.parameters.items())
        return (join_alpha(curve.decode(rgb, **curve.parameters), alpha),
                f"{curve.name} ({settings})" if settings else curve.name)


class HDRConvertGamut:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "convert"
    DESCRIPTION = ("Scene-linear RGB from one gamut to another (matrices derived from the "
                   "primaries). Out-of-gamut colours come out negative: that is data, not an "
                   "error, and nothing is clipped.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear RGB in the source gamut."}),
            "source": (GAMUT_NAMES, {"default": "rec709", "tooltip": "Gamut the image is in."}),
            "target": (GAMUT_NAMES, {"default": "rec2020", "tooltip": "Gamut to convert to."}),
            "adaptation": (ADAPTATIONS, {
                "default": "bradford",
                "tooltip": "Chromatic adaptation when the white points differ (ACES AP0/AP1 "
                           "use ~D60, the others D65). 'none' keeps XYZ unadapted.",
            }),
        }}

    def convert(self, image, source, target, adaptation):
        rgb, alpha = split_alpha(require_image(image, "image", "Convert Gamut"))
        method = None if adaptation == "none" else adaptation
        return (join_alpha(gamut.convert_gamut(rgb, source, target, adaptation=method), alpha),)


NODE_CLASS_MAPPINGS = {
    "HDRLogEncode": HDRLogEncode,
    "HDRLogDecode": HDRLogDecode,
    "HDRLoraLogDecode": HDRLoraLogDecode,
    "HDRConvertGamut": HDRConvertGamut,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HDRLogEncode": "Log Encode (scene-linear to code values)",
    "HDRLogDecode": "Log Decode (to scene-linear)",
    "HDRLoraLogDecode": "Log Decode (LoRA's curve)",
    "HDRConvertGamut": "Convert Gamut",
}
