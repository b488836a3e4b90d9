"""``train-lumaflux``: the standalone LumaFlux loop as a command, writing an adapter folder.

    python -m comfyui_hdr.training train-lumaflux --model FLUX_DIR --siglip SIGLIP_DIR \\
        --data EXR_DIR --crop 64 --steps 2000 --output ADAPTERS_DIR [--ablation pga]

Each step draws ``--batch-size`` HDR crops (scene-linear Rec.709 EXR/HDR under ``--data``,
or ``--procedural N`` scenes), synthesises the SDR inputs with the pack's tone mappers
(``--tone-mappers``, one per crop in turn; display-linear clipped to [0, 1], sRGB-encoded)
and the targets as BT.2020 PQ code values (1.0 = 203 nits, ITU-R BT.2408), and trains
:func:`.lumaflux_fit.fit_batches` with AdamW and a cosine schedule after a linear warm-up.
The frozen transformer reads SDR pixels in ``patch x patch`` tokens (the pixel-space
stand-in of :mod:`.lumaflux_fit`), so ``--model`` needs ``in_channels = 3 patch^2``; the
prompt conditioning is empty (zero embeddings: no text encoder is loaded). The result is
saved with :func:`comfyui_hdr.hdr.models.lumaflux_folder.save_lumaflux`.

``--ablation`` picks the poster's ablation rows that these adapters express (each on
top of the frozen Flux): ``lora`` (plain value LoRA, rank ``--rank``, 8 in the poster),
``pga-no-spectral``, ``pga``, ``pcm`` (PGA + PCM), ``full`` (PGA + PCM + coupler, the
default), ``rqs-linear`` and ``rqs-monotone`` (``full`` with an affine or the monotone RQS
tone-field curve; every other row uses the monotone RQS, which the pipeline needs to make
HDR).

References
----------
LumaFlux poster: AdamW, learning rate 1e-4, cosine decay with warm-up; the ablation table;
SDR inputs synthesised from HDR with several tone mappers. Loshchilov & Hutter (2019),
AdamW; (2017) SGDR (cosine decay).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..hdr.gamut import convert_gamut
from ..hdr.models.lumaflux import LumaFluxAdapters, LumaFluxSwitches
from ..hdr.models.lumaflux_folder import LumaFluxAdapterSet, save_lumaflux
from ..hdr.models.lumaflux_parts import load_siglip, siglip_tokens
from ..hdr.models.tone_field import SDR_WHITE_NITS, ToneFieldHead
from ..hdr.tonemap import TONE_MAPPERS, get_tone_mapper
from ..hdr.transfer import pq_encode, srgb_encode
from .data import ExrFolderDataset, ProceduralScenes
from .lora_models import load_model
from .lumaflux_fit import FitOptions, LumaFluxPipeline, fit_batches

__all__ = ["ABLATIONS", "ABLATION_CURVES", "DEFAULT_TONE_MAPPERS", "main", "synthesise_pair"]

ABLATIONS = {
    "lora": LumaFluxSwitches(pga=True, gates=False, spectral=False, pcm=False,
                             coupler=False),
    "pga-no-spectral": LumaFluxSwitches(pga=True, spectral=False, pcm=False, coupler=False),
    "pga": LumaFluxSwitches(pga=True, spectral=True, pcm=False, coupler=False),
    "pcm": LumaFluxSwitches(pga=True, spectral=True, pcm=True, coupler=False),
    "full": LumaFluxSwitches(),
    "rqs-linear": LumaFluxSwitches(),
    "rqs-monotone": LumaFluxSwitches(),
}
"""The poster's ablation rows, cumulative as its table reads: each maps to the adapter
switches; the last two differ in the tone-field curve (:data:`ABLATION_CURVES`)."""

ABLATION_CURVES = {"rqs-linear": "linear"}
"""The rows whose tone-field head is not the monotone RQS (:data:`.tone_field.TONE_CURVES`)."""

DEFAULT_TONE_MAPPERS = ("reinhard", "bt2446a", "bt2390")
"""A global curve and two ITU-R broadcast tone mappers (BT.2446 method A, BT.2390 EETF)."""

WARMUP_STEPS = 100
"""Default linear warm-up (steps), capped at a tenth of ``--steps``: the poster states a
warm-up but not its length; 100 steps is diffusers' examples' usual ``lr_warmup_steps``
order for LoRA runs of a few thousand steps."""


def synthesise_pair(hdr: torch.Tensor, tone_mapper: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene-linear Rec.709 ``[..., 3]`` (1.0 = diffuse white) -> (SDR sRGB code values
    in [0, 1], BT.2020 PQ target code values with 1.0 at 203 nits)."""
    display = get_tone_mapper(tone_mapper)(hdr)
    sdr = srgb_encode(display.clamp(0.0, 1.0)).clamp(0.0, 1.0)
    target = pq_encode(convert_gamut(hdr, "rec709", "rec2020").clamp_min(0.0),
                       nits_at_1=SDR_WHITE_NITS)
    return sdr, target


def _patch(transformer) -> int:
    channels = transformer.config.in_channels
    patch = math.isqrt(channels // 3)
    if channels != 3 * patch * patch:
        raise ValueError(f"--model has in_channels {channels}; train-lumaflux feeds SDR "
                         "pixels in patch x patch tokens, so it needs in_channels = 3 patch^2 "
                         "(12 for 2 x 2): VAE latents are not wired into this command")
    return patch


def _trainable(adapters: LumaFluxAdapters, head: ToneFieldHead) -> int:
    """Parameters the switched-on parts train (every part is built; the others stay idle)."""
    switches = adapters.switches
    parts: list[torch.nn.Module] = [head]
    if (switches.pga and switches.gates) or switches.pcm or switches.coupler:
        parts.append(adapters.tlam)  # read by the gates, the FiLM and the coupler only
    if switches.pga:
        for lora in (*adapters.value_lora, *adapters.context_value_lora):
            parts += [lora.down, lora.up] + ([lora.gate] if switches.gates else [])
    parts += [*adapters.film] if switches.pcm else []
    parts += [*adapters.coupler] if switches.coupler else []
    return sum(parameter.numel() for part in parts for parameter in part.parameters())


def _dataset(arguments):
    if (arguments.data is None) == (arguments.procedural is None):
        raise ValueError("give exactly one of --data EXR_FOLDER or --procedural N")
    if arguments.data is not None:
        return ExrFolderDataset(arguments.data, crop=arguments.crop, seed=arguments.seed)
    return ProceduralScenes(arguments.procedural, size=arguments.crop, seed=arguments.seed)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training train-lumaflux",
        description="Train LumaFlux adapters and the RQS tone-field head on a frozen Flux "
                    "(SDR -> BT.2020 PQ HDR) and save them as an adapter folder.")
    parser.add_argument("--model", required=True, type=Path,
                        help="diffusers FluxTransformer2DModel folder (in_channels 3 patch^2)")
    parser.add_argument("--siglip", required=True, type=Path,
                        help="SiglipVisionModel folder (save_pretrained)")
    parser.add_argument("--output", required=True, type=Path, help="adapter folder to write")
    parser.add_argument("--data", type=Path, help="folder of scene-linear Rec.709 EXR/HDR")
    parser.add_argument("--procedural", type=int, help="train on N procedural HDR scenes")
    parser.add_argument("--crop", type=int, default=64, help="square crop side (pixels)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--tone-mappers", default=",".join(DEFAULT_TONE_MAPPERS),
                        help=f"comma-separated, of: {', '.join(TONE_MAPPERS)}")
    parser.add_argument("--ablation", choices=ABLATIONS, default="full",
                        help="which adapters run (the poster's ablation rows)")
    parser.add_argument("--rank", type=int, default=8, help="PGA's value-LoRA rank (8)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=1e-4,
                        help="AdamW learning rate (poster: 1e-4)")
    parser.add_argument("--warmup-steps", type=int,
                        help=f"linear warm-up steps (default {WARMUP_STEPS}, at most a "
                             "tenth of --steps), then cosine decay to 0")
    parser.add_argument("--weight-decay", type=float, default=0.01,
                        help="AdamW weight decay (torch's default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output folder")
    return parser


def _train(arguments) -> LumaFluxAdapterSet:
    mappers = [name.strip() for name in arguments.tone_mappers.split(",") if name.strip()]
    for name in mappers or [""]:
        get_tone_mapper(name)
    if arguments.steps < 1 or arguments.batch_size < 1 or arguments.rank < 1:
        raise ValueError("--steps, --batch-size and --rank must be >= 1")
    if arguments.output.exists() and not arguments.overwrite:
        raise ValueError(f"--output {arguments.output} exists; pass --overwrite or pick "
                         "another folder")
    dataset = _dataset(arguments)
    transformer = load_model(arguments.model, "transformer", "--model")
    patch = _patch(transformer)
    encoder = load_siglip(arguments.siglip)
    torch.manual_seed(arguments.seed)
    adapters = LumaFluxAdapters(transformer, encoder.config.hidden_size, arguments.rank,
                                ABLATIONS[arguments.ablation])
    config = transformer.config
    head = ToneFieldHead((config.out_channels or config.in_channels) // (patch * patch),
                         curve=ABLATION_CURVES.get(arguments.ablation, "monotone"))
    adapter_set = LumaFluxAdapterSet(
        adapters, head, torch.zeros(1, 1, config.joint_attention_dim),
        torch.zeros(1, config.pooled_projection_dim), patch)
    pipeline = LumaFluxPipeline(transformer, adapters.attach(transformer), head,
                                adapter_set.prompt, adapter_set.pooled_prompt, patch)
    trainable = _trainable(adapters, head)
    frozen = sum(p.numel() for p in transformer.parameters())
    print(f"train-lumaflux: {trainable:,} trainable parameters on a frozen {frozen:,} "
          f"({100 * trainable / (trainable + frozen):.2f}%), ablation {arguments.ablation}")

    def batch(step: int):
        items = [dataset[(step * arguments.batch_size + i) % len(dataset)]["hdr"][0]
                 for i in range(arguments.batch_size)]
        pairs = [synthesise_pair(item.float(), mappers[(step + i) % len(mappers)])
                 for i, item in enumerate(items)]
        sdr = torch.stack([pair[0] for pair in pairs])
        return sdr, siglip_tokens(encoder, sdr), torch.stack([pair[1] for pair in pairs])

    warmup = (arguments.warmup_steps if arguments.warmup_steps is not None
              else min(WARMUP_STEPS, arguments.steps // 10))
    losses = fit_batches(pipeline, batch, FitOptions(
        steps=arguments.steps, learning_rate=arguments.learning_rate, warmup_steps=warmup,
        weight_decay=arguments.weight_decay, seed=arguments.seed))
    tenth = max(1, len(losses) // 10)
    print(f"mean loss {sum(losses[:tenth]) / tenth:.5g} over the first {tenth} steps, "
          f"{sum(losses[-tenth:]) / tenth:.5g} over the last {tenth}")
    save_lumaflux(arguments.output, transformer, adapter_set, overwrite=arguments.overwrite)
    return adapter_set


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train-lumaflux``; return the exit code (0, or 2 on bad input)."""
    arguments = _parser().parse_args(argv)
    try:
        _train(arguments)
    except (ValueError, FileExistsError) as error:
        print(f"train-lumaflux: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
