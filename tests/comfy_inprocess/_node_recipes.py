"""Call recipes for every node in ``NODE_CLASS_MAPPINGS``, run in-process with ComfyUI's own
modules (``folder_paths``, ``comfy.sd``, ``comfy.model_management``) on tiny models.

Each entry maps a node's class name to ``recipe(device, env)`` returning the
:class:`_contract.Case` that ``test_every_node.py`` checks. IMAGE inputs are made on
``device``; only IMAGE inputs are cast to bf16/fp16 (what a half-precision upstream node
hands over). Nodes without an IMAGE input get ``half="none"``. Outputs:

- maths nodes keep the IMAGE's device and dtype;
- nodes that write files (Save EXR, Save Float Array, Save Ultra HDR, Preview HDR) are
  compared through what they wrote, read back;
- LATENT, MASK and CONDITIONING outputs of the model nodes go to ComfyUI's intermediate
  device (the CPU unless ``--gpu-only``), as ComfyUI's own VAE nodes do (``output="cpu"``);
- loaders (no input) make float32 CPU tensors, ComfyUI's IMAGE convention.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from _contract import call, codes, expect, scene

from comfyui_hdr.hdr import exr, transfer, ultrahdr
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata
from comfyui_hdr.hdr.tonemap import TONE_MAPPERS
from comfyui_hdr.nodes import NODE_CLASS_MAPPINGS as NODES

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
_METADATA = GainMapMetadata(gain_map_min=-0.5, gain_map_max=3.0, alternate_hdr_headroom=3.0)


def widget_defaults(name: str) -> dict:
    """The node's widget inputs at their defaults (a combo at its default or first entry)."""
    inputs = NODES[name].INPUT_TYPES()
    values = {}
    for section in ("required", "optional"):
        for key, spec in inputs.get(section, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            if isinstance(kind, list):
                values[key] = options.get("default", kind[0] if kind else "")
            elif kind in WIDGET_TYPES and "default" in options:
                values[key] = options["default"]
    return values


def image_inputs(name: str) -> tuple[str, ...]:
    inputs = NODES[name].INPUT_TYPES()
    return tuple(key for section in ("required", "optional")
                 for key, spec in inputs.get(section, {}).items() if spec[0] == "IMAGE")


def node_call(name: str, **inputs):
    """A case calling node ``name`` with its widget defaults overridden by ``inputs``."""
    node = NODES[name]()
    function = getattr(node, NODES[name].FUNCTION)
    case = call(function, **{**widget_defaults(name), **inputs})
    half_args = image_inputs(name)
    return expect(case, half_args=half_args, half="close" if half_args else "none")


def _result(output):
    return output["result"] if isinstance(output, dict) else output


def _every_curve(direction: str):
    name = "HDRLogEncode" if direction == "encode" else "HDRLogDecode"

    def run(image):
        node = NODES[name]()
        settings = widget_defaults(name)
        return {curve: getattr(node, direction)(image, **{**settings, "curve": curve})
                for curve in transfer.CURVES}

    return run


def _every_tone_map(image):
    node = NODES["HDRToneMap"]()
    return {operator: node.tone_map(image, operator) for operator in TONE_MAPPERS}


def _files(env, output, key: str) -> list[Path]:
    return [env.output / entry["subfolder"] / entry["filename"] for entry in output["ui"][key]]


def _exr_back(env):
    return lambda output: [exr.read_exr(path).pixels for path in _files(env, output, "exr_files")]


def _npy_back(env):
    return lambda output: [np.load(path) for path in _files(env, output, "hdr_arrays")]


def _ultrahdr_back(env):
    return lambda output: [ultrahdr.read_ultrahdr(path).hdr
                           for path in _files(env, output, "images")]


def _viewer_back(env):
    def read(output):
        (view,) = output["ui"]["hdr_view"]
        entry = view["float"]
        return np.load(env.temp / entry["subfolder"] / entry["filename"]).astype(np.float32)
    return read


def _metrics(output):
    return torch.tensor([value for value in json.loads(_result(output)[0]).values()
                         if value is not None], dtype=torch.float64)


def _stats(output):
    return torch.tensor([value for value in output["ui"]["hdr_stats"][0].values()
                         if isinstance(value, float)], dtype=torch.float64)


def _clip(device, frames: int = 3):
    return scene(device, (frames, 16, 16, 3), low=-4, high=4)


def _sdr_clip(device, frames: int):
    return codes(device, (frames, 64, 64, 3), seed=12)


def recipes(env) -> dict:
    """The recipes, given the in-process ComfyUI environment (models, folders)."""
    return {
        "HDRTestChart": lambda d: node_call("HDRTestChart", width=64, height=64),
        "HDRProceduralScene": lambda d: node_call("HDRProceduralScene", width=16, height=16,
                                                  batch_size=2),
        "HDRLogEncode": lambda d: expect(call(_every_curve("encode"), image=scene(d)),
                                         half_args=("image",)),
        "HDRLogDecode": lambda d: expect(call(_every_curve("decode"), image=codes(d)),
                                         half_args=("image",)),
        "HDRLoraLogDecode": lambda d: node_call("HDRLoraLogDecode", image=codes(d),
                                                lora_name="loggamma.safetensors"),
        "HDRConvertGamut": lambda d: node_call("HDRConvertGamut", image=scene(d),
                                               source="rec709", target="awg4"),
        "HDROCIODisplayPreview": lambda d: node_call("HDROCIODisplayPreview", image=scene(d)),
        "HDROCIOConvert": lambda d: node_call("HDROCIOConvert", image=scene(d),
                                              source="ACEScg", target="ACES2065-1"),
        "HDRToneMap": lambda d: expect(call(_every_tone_map, image=scene(d, low=-8, high=12)),
                                       half_args=("image",)),
        "HDRGainMapExtract": lambda d: node_call("HDRGainMapExtract", hdr_image=scene(d)),
        "HDRGainMapMerge": lambda d: node_call(
            "HDRGainMapMerge", sdr_image=codes(d), gain_map=codes(d, (2, 8, 8, 3), seed=7),
            metadata=_METADATA, display_headroom_stops=2.0),
        "HDRMergeBrackets": lambda d: node_call(
            "HDRMergeBrackets", brackets=codes(d, (3, 24, 24, 3), seed=3), evs="-1, 0, 1",
            align="phase"),
        "HDRExposure": lambda d: node_call("HDRExposure", image=scene(d), stops=1.5),
        "HDRStats": lambda d: expect(node_call("HDRStats", image=scene(d)), compare=_stats),
        "HDRMetrics": lambda d: expect(
            node_call("HDRMetrics", image=_clip(d), reference=_clip(d) * 1.1),
            compare=_metrics),
        "HDRPreview": lambda d: expect(node_call("HDRPreview", image=scene(d)),
                                       compare=_viewer_back(env)),
        "HDRSaveEXR": lambda d: expect(
            node_call("HDRSaveEXR", images=scene(d), filename_prefix="contract/exr",
                      pixel_type="float", mask=codes(d, (2, 16, 16), seed=9),
                      extra_layer_1=codes(d)), compare=_exr_back(env)),
        "HDRLoadEXR": lambda d: expect(node_call("HDRLoadEXR", file="plates/chart_00001_.exr"),
                                       output="cpu"),
        "HDRSaveFloatArray": lambda d: expect(
            node_call("HDRSaveFloatArray", image=scene(d), filename_prefix="contract/raw"),
            compare=_npy_back(env), dtype="float32"),
        "HDRLoadFloatArray": lambda d: expect(node_call("HDRLoadFloatArray", array=env.npy),
                                              output="cpu"),
        "HDRSaveUltraHDR": lambda d: expect(
            node_call("HDRSaveUltraHDR", filename_prefix="contract/uhdr",
                      hdr_image=scene(d, (1, 16, 16, 3), low=-2, high=3)),
            compare=_ultrahdr_back(env)),
        "HDRLoadUltraHDR": lambda d: expect(
            node_call("HDRLoadUltraHDR", image="ultrahdr_example.jpg"), output="cpu"),
        "HDRVAEDecodeUnclamped": lambda d: expect(
            node_call("HDRVAEDecodeUnclamped", samples={"samples": env.wan_latent()},
                      vae=env.wan_vae), output="cpu"),
        "HDRLoadPromptEmbeddings": lambda d: expect(
            node_call("HDRLoadPromptEmbeddings", embeddings=env.wan["base"]), output="cpu"),
        "HDRInContextReference": lambda d: expect(
            node_call("HDRInContextReference", positive=env.conditioning("base"),
                      negative=env.conditioning("negative"), vae=env.wan_vae,
                      reference=codes(d, (5, 16, 16, 3), seed=10),
                      arrangement="wan: frames after the target"), output="cpu",
            dtype="float32"),
        "HDRExposureMasks": lambda d: expect(
            node_call("HDRExposureMasks", image=_sdr_clip(d, 3)), dtype="float32"),
        "HDRCFAPatch": lambda d: node_call(
            "HDRCFAPatch", model=env.wan_model, masks=env.masks(9),
            over=env.conditioning("over"), under=env.conditioning("under")),
        "HDRCFASampler": lambda d: expect(
            node_call("HDRCFASampler", model=env.wan_model, positive=env.conditioning("base"),
                      negative=env.conditioning("negative"),
                      latent_image={"samples": env.wan_latent(3)}, masks=env.masks(9),
                      steps=1, cfg=1.0, sampler_name="euler", scheduler="simple",
                      window_frames=5, window_stride=4, over=env.conditioning("over"),
                      under=env.conditioning("under")), output="cpu"),
        "HDRLoadVAE": lambda d: node_call("HDRLoadVAE", vae_name=env.hdr["vae"]),
        "HDRVAEEncode": lambda d: expect(
            node_call("HDRVAEEncode", image=scene(d, (1, 32, 48, 3)), hdr_vae=env.hdr_vae,
                      tile_size=16), output="cpu", dtype="float32"),
        "HDRVAEDecode": lambda d: expect(
            node_call("HDRVAEDecode", samples={"samples": env.hdr_latent()},
                      hdr_vae=env.hdr_vae, tile_size=16), output="cpu"),
        "HDREmptyLatent": lambda d: expect(
            node_call("HDREmptyLatent", width=64, height=32, batch_size=2, hdr_vae=env.hdr_vae),
            output="cpu"),
        "HDRLoadDiffusionModel": lambda d: node_call("HDRLoadDiffusionModel",
                                                     unet_name=env.hdr["model"]),
    }
