"""Colour nodes: "Log Encode", "Log Decode" and "Convert Gamut".

The curve menu is :data:`hdr.transfer.CURVES`; each curve reads only the settings it has
(the tooltips say which), so one node covers every encoding.
"""

from __future__ import annotations

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
    "HDRConvertGamut": HDRConvertGamut,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HDRLogEncode": "Log Encode (scene-linear to code values)",
    "HDRLogDecode": "Log Decode (to scene-linear)",
    "HDRConvertGamut": "Convert Gamut",
}
