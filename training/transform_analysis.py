"""``transform-analysis``: which log curve makes HDR look most like a frozen VAE's SDR data.

    python -m comfyui_hdr.training.transform_analysis --vae DIR [--data procedural|EXR_FOLDER]
        [--scenes N] [--size S] [--sdr FOLDER_OF_PNG_JPG] [--curves logc3,logc4,...]
        [--csv OUT.csv [--overwrite]]

Seed 001 (LumiVid: Korem et al. 2026, "HDR Video Generation via Latent Alignment with
Logarithmic Encoding", arXiv:2604.11788, Table 1) chooses its HDR encoding by how close
curve-encoded HDR sits to the SDR data the pretrained model was trained on, and how well
it survives the frozen VAE. This tool measures both for any diffusers VAE and curve of
:data:`~comfyui_hdr.hdr.transfer.CURVES`; one :class:`TransformRow` per curve:

- ``pixel_kl``: ``KL(P_curve || Q_sdr)`` in nats (natural logarithm) between the
  histograms of the curve's code values of the HDR set and of the SDR set's code values,
  R, G and B pooled; ``bins`` equal bins over [0, 1] plus an underflow bin (< 0) and an
  overflow bin (> 1) that both histograms have (code 1.0 falls in the last in-range bin,
  as in :func:`numpy.histogram`).
- ``latent_kl``: the same KL between the VAE's latent means (normalised as the
  pipelines do, :func:`~.lora_models.encode_latents`), per latent channel, over the range
  between the SDR latents' 0.5th and 99.5th percentiles of that channel (plus
  under/overflow bins), averaged over channels.
- ``roundtrip_pu21_psnr``: curve encode -> VAE encode (mean) -> VAE decode -> curve
  decode, code values never clamped, against the original HDR: PU21-PSNR (luminance) with
  scene-linear 1.0 at 100 nits and the PU21 value of 100 nits as the peak signal (the
  pycvvdp convention, :func:`~comfyui_hdr.hdr.metrics.pu21_psnr`), all images pooled.
- ``roundtrip_stops``: the median ``|log2(Y_out / Y_in)|`` of the pixels whose input
  luminance is at least 7 stops under diffuse white (an output darker than that is read
  as that floor).
- ``headroom_stops``: ``log2(linear_max)``, the stops above diffuse white code 1.0 holds.

Both histograms get a probability floor of 1e-6 per bin before renormalising (additive
smoothing), so a curve putting mass where SDR has none (codes above 1.0) is penalised by
``p log(p / 1e-6)`` rather than infinitely. The stored text of the paper available to us
does not give its bin count, smoothing or channel pooling: those above are our choices.

Without ``--sdr``, the SDR reference set is the HDR set as the training makes its SDR
references: :func:`~comfyui_hdr.hdr.degrade.degrade_pair` with
:meth:`~comfyui_hdr.hdr.degrade.DegradationConfig.clean` (BT.2390 EETF on max(R, G, B),
clipped, sRGB-encoded; no random degradation). The Wan and Qwen-Image VAEs clamp their
decoded pixels to [-1, 1] themselves, so their round trip keeps codes in [0, 1].
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..hdr.atomic import atomic_path
from ..hdr.degrade import DegradationConfig, degrade_pair
from ..hdr.gamut import luminance
from ..hdr.metrics import pu21_psnr
from ..hdr.scenes import hdr_scenes
from ..hdr.transfer import parse_curve
from .data import HDR_IMAGE_SUFFIXES, read_hdr_image
from .lora_models import decode_latents, encode_latents, load_model

__all__ = ["ANALYSIS", "DEFAULT_CURVES", "AnalysisSettings", "TransformRow",
           "analyze_transforms", "format_table", "histogram", "kl_divergence", "latent_kl",
           "main", "pixel_kl"]

DEFAULT_CURVES = ("logc3", "logc4", "pq", "hlg", "acescct", "loggamma")
"""The curves of LumiVid's Table 1 that :data:`~comfyui_hdr.hdr.transfer.CURVES` holds,
plus DiffHDR's log-gamma (seed 004)."""


@dataclass(frozen=True)
class AnalysisSettings:
    """The fixed choices of the analysis (see the module docstring)."""

    # Additive smoothing: a probability floor added to every bin, then renormalised.
    epsilon: float = 1e-6
    # Range of a latent channel's histogram: these percentiles of the SDR latents.
    latent_percentiles: tuple[float, float] = (0.5, 99.5)
    # PU21-PSNR: display nits of scene-linear 1.0, and the luminance whose PU21 value is
    # the peak signal (pycvvdp and the PU21 reference code use 100 nits).
    nits_at_1: float = 100.0
    peak_nits: float = 100.0
    # Round-trip stops: pixels darker than this (7 stops under diffuse white) are left out.
    stops_floor: float = 2.0**-7


ANALYSIS = AnalysisSettings()


@dataclass(frozen=True)
class TransformRow:
    """One curve's results (KL in nats, PSNR in dB, errors and headroom in stops)."""

    curve: str
    label: str
    pixel_kl: float
    latent_kl: float
    roundtrip_pu21_psnr: float
    roundtrip_stops: float
    headroom_stops: float


def histogram(values: torch.Tensor, bins: int, low: float = 0.0,
              high: float = 1.0) -> torch.Tensor:
    """Counts of ``values`` in ``bins`` equal bins over ``[low, high]`` plus outliers.

    Returns ``[bins + 2]`` float64 counts: the underflow bin (``< low``), the in-range
    bins (each ``[a, b)``, the last ``[a, high]``, as :func:`numpy.histogram`) and the
    overflow bin (``> high``). NaN values raise ``ValueError``.

    >>> histogram(torch.tensor([-0.5, 0.0, 0.25, 0.5, 1.0, 2.0]), 2).tolist()
    [1.0, 2.0, 2.0, 1.0]
    """
    flat = values.detach().reshape(-1).to(torch.float64).contiguous()
    if flat.isnan().any():
        raise ValueError("values hold NaN; check the VAE's precision (use float32) and the "
                         "input images")
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64, device=flat.device)
    inside = (torch.bucketize(flat, edges, right=True) - 1).clamp(0, bins - 1) + 1
    index = torch.where(flat < low, 0, torch.where(flat > high, bins + 1, inside))
    return torch.bincount(index, minlength=bins + 2).to(torch.float64).cpu()


def kl_divergence(p_counts: torch.Tensor, q_counts: torch.Tensor,
                  epsilon: float = ANALYSIS.epsilon) -> float:
    """``KL(P || Q)`` in nats of two histograms, each smoothed by a per-bin floor.

    ``P = normalise(p_counts / sum + epsilon)``, likewise ``Q``; then
    ``sum P log(P / Q)`` (the natural logarithm, as :func:`scipy.stats.entropy`).

    >>> round(kl_divergence(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])), 6)
    0.130811
    """
    p = p_counts.to(torch.float64) / p_counts.sum() + epsilon
    q = q_counts.to(torch.float64) / q_counts.sum() + epsilon
    p, q = p / p.sum(), q / q.sum()
    return float((p * (p / q).log()).sum())


def pixel_kl(codes: torch.Tensor, sdr: torch.Tensor, bins: int = 256) -> float:
    """KL in nats of the code values ``codes`` against the SDR code values ``sdr``."""
    return kl_divergence(histogram(codes, bins), histogram(sdr, bins))


def latent_kl(latents: torch.Tensor, sdr_latents: torch.Tensor, bins: int = 256) -> float:
    """Mean over channels of the KL in nats of ``latents`` against ``sdr_latents``.

    Latents are ``[B, C, ...]``; channel ``c``'s bins span the SDR latents' percentiles
    :attr:`AnalysisSettings.latent_percentiles` of that channel.
    """
    total = 0.0
    for channel in range(sdr_latents.shape[1]):
        reference = sdr_latents[:, channel].reshape(-1).to(torch.float64)
        low, high = np.percentile(reference.numpy(), ANALYSIS.latent_percentiles)
        low, high = float(low), float(max(high, low + 1e-12))
        total += kl_divergence(histogram(latents[:, channel], bins, low, high),
                               histogram(reference, bins, low, high))
    return total / sdr_latents.shape[1]


def _is_video(vae: torch.nn.Module) -> bool:
    """True for VAEs that take ``[B, C, T, H, W]`` (Wan, Qwen-Image, LTX...): 3-D convolutions."""
    return any(isinstance(module, torch.nn.Conv3d) for module in vae.modules())


def _latents(vae, codes: torch.Tensor, video: bool, batch_size: int) -> torch.Tensor:
    return torch.cat([encode_latents(vae, codes[start:start + batch_size, None], video).cpu()
                      for start in range(0, len(codes), batch_size)])


def _roundtrip(vae, latents: torch.Tensor, video: bool, batch_size: int,
               size: tuple[int, ...]) -> torch.Tensor:
    codes = torch.cat([decode_latents(vae, latents[start:start + batch_size], video).cpu()
                       for start in range(0, len(latents), batch_size)])
    if codes.shape[1:] != size:
        raise ValueError(f"the VAE decoded {tuple(size[:2])} images to "
                         f"{tuple(codes.shape[1:3])}; use a --size the VAE's downsampling "
                         "divides (a multiple of 8 for most VAEs)")
    return codes


def _stops_error(test: torch.Tensor, reference: torch.Tensor) -> float:
    floor = ANALYSIS.stops_floor
    y_in, y_out = luminance(reference), luminance(test)
    kept = y_in >= floor
    if not kept.any():
        return math.nan
    return float((y_out[kept].clamp_min(floor) / y_in[kept]).log2().abs().median())


def _check_images(images: torch.Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"{name} must be a non-empty batch [N, H, W, 3], got shape "
                         f"{tuple(images.shape)}")
    if not images.isfinite().all():
        raise ValueError(f"{name} holds NaN or Inf values; replace them before analysing")


def analyze_transforms(vae, hdr: torch.Tensor, sdr: torch.Tensor,
                       curves: Sequence[str] = DEFAULT_CURVES, bins: int = 256,
                       batch_size: int = 4) -> list[TransformRow]:
    """Measure how each curve aligns ``hdr`` with the SDR set ``sdr`` and survives ``vae``.

    Parameters
    ----------
    vae
        A diffusers VAE (``AutoencoderKL``, ``AutoencoderKLWan``, ...), in eval mode.
    hdr
        Scene-linear Rec.709 ``[N, H, W, 3]`` (1.0 = diffuse white).
    sdr
        SDR display code values ``[M, H', W', 3]`` in [0, 1] (sRGB-encoded images).
    curves
        Names in :data:`~comfyui_hdr.hdr.transfer.CURVES`, each optionally with its
        parameters (:func:`~comfyui_hdr.hdr.transfer.parse_curve`, e.g.
        ``loggamma:ceiling=65536``), in table order; a row is named by its spec.
    bins, batch_size
        Histogram bins over [0, 1] (or a latent channel's range); images per VAE call.

    Returns
    -------
    One :class:`TransformRow` per curve, in the order of ``curves``.

    References
    ----------
    Korem et al. (2026), LumiVid, arXiv:2604.11788, Table 1 (see the module docstring).
    """
    resolved = [(spec, parse_curve(spec)) for spec in curves]
    if not resolved:
        raise ValueError("curves is empty; name at least one of the curves, e.g. logc3")
    if bins < 1 or batch_size < 1:
        raise ValueError(f"bins ({bins}) and batch_size ({batch_size}) must be at least 1")
    _check_images(hdr, "hdr")
    _check_images(sdr, "sdr")
    video = _is_video(vae)
    hdr, sdr = hdr.to(torch.float32), sdr.to(torch.float32)
    sdr_latents = _latents(vae, sdr, video, batch_size)
    rows = []
    for spec, curve in resolved:
        codes = curve.encode(hdr, **curve.parameters)
        latents = _latents(vae, codes, video, batch_size)
        decoded = _roundtrip(vae, latents, video, batch_size, tuple(hdr.shape[1:]))
        linear = curve.decode(decoded.to(torch.float64), **curve.parameters)
        linear = torch.nan_to_num(linear, nan=math.nan)  # +-Inf -> +-max: PU21 clips anyway
        rows.append(TransformRow(
            curve=spec.strip(), label=curve.label, pixel_kl=pixel_kl(codes, sdr, bins),
            latent_kl=latent_kl(latents, sdr_latents, bins),
            roundtrip_pu21_psnr=pu21_psnr(linear, hdr, nits_at_1=ANALYSIS.nits_at_1,
                                          peak_nits=ANALYSIS.peak_nits),
            roundtrip_stops=_stops_error(linear, hdr.to(torch.float64)),
            headroom_stops=math.log2(curve.linear_max)))
    return rows


_HEADINGS = ("curve", "label", "pixel KL", "latent KL", "PU21-PSNR dB", "error stops",
             "headroom stops")


def format_table(rows: Sequence[TransformRow]) -> str:
    """A plain-text table of ``rows`` in their order (no ranking), with a units note."""
    cells = [_HEADINGS] + [(row.curve, row.label, f"{row.pixel_kl:.4f}",
                            f"{row.latent_kl:.4f}", f"{row.roundtrip_pu21_psnr:.2f}",
                            f"{row.roundtrip_stops:.3f}", f"{row.headroom_stops:.2f}")
                           for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(_HEADINGS))]
    lines = ["  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(line, widths, strict=True)))
             for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    low, high = ANALYSIS.latent_percentiles
    lines += [f"KL: nats against the SDR set, per-bin floor {ANALYSIS.epsilon:g}; latent KL: "
              f"mean over channels, bins over the SDR latents' {low:g}-{high:g}th percentiles",
              f"round trip: PU21-PSNR with 1.0 = {ANALYSIS.nits_at_1:g} nits, peak "
              f"{ANALYSIS.peak_nits:g} nits; error: median |log2(out/in)| of luminance"]
    return "\n".join(lines)


def _write_csv(path: str, rows: Sequence[TransformRow], overwrite: bool) -> None:
    with atomic_path(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([field.name for field in fields(TransformRow)])
            writer.writerows([repr(value) if isinstance(value, float) else value
                              for value in astuple(row)] for row in rows)


def _centre_crop(image: torch.Tensor, size: int, path: Path) -> torch.Tensor:
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"{path} is {width}x{height}, smaller than --size {size}; lower "
                         "--size")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top:top + size, left:left + size]


def _files(folder: str, suffixes: tuple[str, ...], argument: str, limit: int) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{argument} {root} is not a folder; point it at a folder of "
                         f"{'/'.join(suffixes)} files")
    found = sorted(path for path in root.iterdir() if path.suffix.lower() in suffixes)
    if not found:
        raise ValueError(f"{argument} {root} holds no {'/'.join(suffixes)} files; check the "
                         "folder")
    return found[:limit]


def _read_hdr(folder: str, size: int, limit: int) -> torch.Tensor:
    images = []
    for path in _files(folder, HDR_IMAGE_SUFFIXES, "--data", limit):
        pixels = read_hdr_image(path)
        if pixels.ndim != 3 or pixels.shape[2] < 3:
            raise ValueError(f"{path} has channels {pixels.shape[2:]}; the analysis needs RGB")
        images.append(_centre_crop(torch.from_numpy(pixels[..., :3].copy()), size, path))
    return torch.stack(images)


_EIGHT_BIT_MODES = ("L", "LA", "P", "RGB", "RGBA")


def _read_sdr(folder: str, size: int, limit: int) -> torch.Tensor:
    from PIL import Image

    images = []
    for path in _files(folder, (".png", ".jpg", ".jpeg"), "--sdr", limit):
        with Image.open(path) as image:
            if image.mode not in _EIGHT_BIT_MODES:
                raise ValueError(f"--sdr {path} is a {image.mode} image; the SDR set must be "
                                 "8-bit (L, LA, P, RGB or RGBA): convert 16-bit or float "
                                 "pictures to 8-bit sRGB first")
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        images.append(_centre_crop(torch.from_numpy(pixels), size, path))
    return torch.stack(images)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``transform-analysis``'s command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training transform-analysis",
        description="Compare log curves for a frozen VAE: "
        "pixel and latent KL against SDR data, and the VAE round trip (LumiVid Table 1).")
    parser.add_argument("--vae", required=True, help="diffusers VAE folder (or a pipeline "
                        "folder with vae/)")
    parser.add_argument("--data", default="procedural", help="'procedural' scenes or a "
                        "folder of single-image EXRs (scene-linear Rec.709)")
    parser.add_argument("--scenes", type=int, default=16, help="procedural scenes, or at "
                        "most this many files of each folder, in name order (default 16)")
    parser.add_argument("--size", type=int, default=64, help="scene size, or centre-crop "
                        "side of folder images, in pixels (default 64)")
    parser.add_argument("--sdr", default="", help="folder of SDR PNG/JPEG images (8-bit "
                        "sRGB); default: the HDR set tone mapped as the training does")
    parser.add_argument("--curves", default=",".join(DEFAULT_CURVES),
                        help="comma-separated curve names, each optionally with parameters "
                        "after a colon, ';' between a curve's parameters, e.g. "
                        "loggamma,loggamma:ceiling=65536 (log-gamma's M: 1000 by default, "
                        f"65536 in DiffHDR's code) (default {','.join(DEFAULT_CURVES)})")
    parser.add_argument("--bins", type=int, default=256, help="histogram bins (default 256)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per VAE call "
                        "(default 4)")
    parser.add_argument("--csv", default="", help="also write the table as CSV here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --csv file")
    return parser.parse_args(argv)


def _run(arguments: argparse.Namespace) -> list[TransformRow]:
    if arguments.scenes < 1 or arguments.size < 1:
        raise ValueError("--scenes and --size must be at least 1")
    curves = [spec.strip().replace(";", ",") for spec in arguments.curves.split(",")
              if spec.strip()]
    for spec in curves:
        parse_curve(spec)
    vae = load_model(arguments.vae, "vae", "--vae")
    if not (hasattr(vae, "encode") and hasattr(vae, "decode")):
        raise ValueError(f"--vae {arguments.vae} holds a {type(vae).__name__}, not a VAE; "
                         "point it at a VAE folder or a pipeline with vae/")
    if arguments.data == "procedural":
        hdr = hdr_scenes(range(arguments.scenes), arguments.size)
    else:
        hdr = _read_hdr(arguments.data, arguments.size, arguments.scenes)
    if arguments.sdr:
        sdr = _read_sdr(arguments.sdr, arguments.size, arguments.scenes)
    else:
        sdr = degrade_pair(hdr, DegradationConfig.clean()).sdr_reference
    return analyze_transforms(vae, hdr, sdr, curves, arguments.bins, arguments.batch_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``transform-analysis`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = parse_args(argv)
    try:
        if arguments.csv and Path(arguments.csv).exists() and not arguments.overwrite:
            raise ValueError(f"--csv {arguments.csv} exists; pass --overwrite or pick "
                             "another name")
        rows = _run(arguments)
        if arguments.csv:
            _write_csv(arguments.csv, rows, arguments.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"transform-analysis: error: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
