"""Camera-mimicking degradations: an HDR frame and the SDR reference a camera would give.

SDR-to-HDR models learn what SDR loses, so a training pair needs an SDR reference as
damaged as a real one. :func:`degrade_pair` tone maps scene-linear HDR to SDR with a
chosen operator, then, each with its own probability and strength (a frozen
:class:`DegradationConfig`), applies in camera order:

1. ``exposure``: a push or pull in stops, applied to the HDR *and* the SDR;
2. ``shadow_noise``: sensor noise, variance ``shot * Y + read``, opponent colour, high-pass;
3. ``white_balance``: red and blue gains;
4. clipping to the SDR range and sRGB encoding (always);
5. ``contrast``: scaling of code values about the frame's mean luma;
6. ``highlight_blur`` / ``shadow_blur``: a Gaussian blur weighted by a luma mask that is
   exactly 0 in the mid-tones, so they stay untouched;
7. ``jpeg`` (Pillow) and ``h264`` (PyAV/libx264, an MP4 in memory) compression;
8. ``quantisation`` to 8-bit code values.

Everything after step 1 touches the SDR reference only. Random draws come from one
:class:`numpy.random.Generator` per step, spawned from the seed, so a pair is
reproducible and switching one step off does not change what the others draw.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

from ._array import to_tensor, working_dtype
from .degrade_config import _STEPS, AppliedDegradation, DegradationConfig, DegradedPair
from .exposure import apply_stops
from .gamut import luminance
from .tonemap import get_tone_mapper
from .transfer import srgb_encode

__all__ = [  # the step configs live in degrade_config; the pair types are used here too
    "AppliedDegradation",
    "DegradationConfig",
    "DegradedPair",
    "add_shadow_noise",
    "apply_white_balance",
    "degrade_pair",
    "downscale_reference",
    "h264_compress",
    "jpeg_compress",
    "quantise",
    "scale_contrast",
    "selective_blur",
]


def _frames(image: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, C]`` as ``[N, C, H, W]``."""
    return image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2)


def _unframes(planes: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return planes.permute(0, 2, 3, 1).reshape(like.shape)


def _box_mean_circular(planes: torch.Tensor, size: int) -> torch.Tensor:
    for dim in (-2, -1):
        offsets = range(-(size // 2), size - size // 2)
        planes = sum(torch.roll(planes, offset, dim) for offset in offsets) / size
    return planes


# Orthonormal opponent axes: red-green and yellow-blue, both summing to zero over R, G, B.
_RED_GREEN = (1 / math.sqrt(2), -1 / math.sqrt(2), 0.0)
_YELLOW_BLUE = (1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6))


def add_shadow_noise(linear, *, shot: float = 1.5e-3, read: float = 1e-5,
                     chroma_ratio: float = 0.35, highpass_kernel: int = 7,
                     scale: float = 1.0, generator: torch.Generator | None = None):
    """Add high-passed, opponent-colour sensor noise to display-linear RGB.

    Per pixel, ``sigma**2 = scale**2 * (shot * Y + read)`` with Y the luminance (clamped
    at 0), so the noise relative to the signal grows towards the shadows. The noise is
    ``sigma * (n_luma * (1, 1, 1) + chroma_ratio * sqrt(3) * (n_rg * rg + n_yb * yb))``
    with ``rg`` and ``yb`` the unit red-green and yellow-blue axes: every channel gets
    luma noise of variance ``sigma**2``, and projected on unit axes (grey
    ``(1, 1, 1) / sqrt(3)``, ``rg``, ``yb``) the chroma noise's std is ``chroma_ratio``
    times the luma noise's. Each unit field ``n`` is high-passed first: its
    ``highpass_kernel`` x ``highpass_kernel`` box mean (wrapping at the edges) is removed
    and it is divided by ``sqrt(1 - 1/k**2)``, which keeps unit variance.

    Parameters
    ----------
    linear
        Display-linear RGB ``[..., H, W, 3]`` (1.0 = SDR peak).
    shot, read
        Shot-noise gain and read-noise variance (LumiPic model card: 1.5e-3, 1e-5).
    chroma_ratio
        Chroma noise std over luma noise std (0.35).
    highpass_kernel
        Box size of the high-pass, in pixels (7).
    scale
        Multiplies the noise's standard deviation.
    generator
        Torch generator the noise is drawn from (reproducibility), on the CPU by default:
        the noise is drawn on the generator's device, then moved to the image, so a seed
        gives the same noise on every device. bfloat16/float16 images get noise built in
        float32, added in their own dtype.

    Returns
    -------
    Noisy RGB, same shape, dtype and device, unclipped.

    References
    ----------
    Foi, Trimeche, Katkovnik & Egiazarian (2008), "Practical Poissonian-Gaussian noise
    modeling and fitting for single-image raw-data", IEEE TIP 17(10), equation 1.
    """
    image = to_tensor(linear)
    work = working_dtype(image.dtype)  # the noise field is built in float32 at least
    planes = _frames(image)
    drawn_on = generator.device if generator is not None else torch.device("cpu")
    unit = torch.randn(planes.shape, device=drawn_on, generator=generator, dtype=work)
    unit = unit.to(image.device)
    unit = (unit - _box_mean_circular(unit, highpass_kernel)) / math.sqrt(
        1 - 1 / highpass_kernel**2)
    axes = unit.new_tensor([(1.0, 1.0, 1.0),
                            tuple(chroma_ratio * math.sqrt(3) * v for v in _RED_GREEN),
                            tuple(chroma_ratio * math.sqrt(3) * v for v in _YELLOW_BLUE)])
    noise = torch.einsum("nkhw,kc->nchw", unit, axes)
    level = luminance(image.detach().to(work)).clamp_min(0)
    sigma = scale * (shot * level + read).sqrt()
    return image + (_unframes(noise, image) * sigma[..., None]).to(image.dtype)


def apply_white_balance(linear, gains):
    """Multiply linear RGB by per-channel ``gains`` (R, G, B).

    >>> apply_white_balance(torch.tensor([0.5, 0.5, 0.5]), (1.2, 1.0, 0.8))
    tensor([0.6000, 0.5000, 0.4000])
    """
    image = to_tensor(linear)
    return image * torch.tensor(gains, dtype=image.dtype, device=image.device)


def scale_contrast(codes, scale: float):
    """Scale code values about each frame's mean luma by ``scale``, clipped to [0, 1].

    ``out = mean + scale * (codes - mean)``, the mean taken over the frame's Rec.709 luma.

    >>> scale_contrast(torch.tensor([[[0.2, 0.2, 0.2], [0.6, 0.6, 0.6]]]), 1.5)[0, :, 0]
    tensor([0.1000, 0.7000])
    """
    image = to_tensor(codes)
    mean = luminance(image).mean(dim=(-2, -1), keepdim=True)[..., None]
    return (mean + scale * (image - mean)).clamp(0.0, 1.0)


def _smoothstep(x: torch.Tensor, edge0: float, edge1: float) -> torch.Tensor:
    t = ((x - edge0) / max(edge1 - edge0, 1e-12)).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gaussian_blur(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=planes.dtype, device=planes.device)
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(planes.shape[1], 1, 1, 1)
    padded = F.pad(planes, (0, 0, radius, radius), mode="replicate")
    planes = F.conv2d(padded, kernel.view(-1, 1, 2 * radius + 1, 1), groups=planes.shape[1])
    padded = F.pad(planes, (radius, radius, 0, 0), mode="replicate")
    return F.conv2d(padded, kernel.view(-1, 1, 1, 2 * radius + 1), groups=planes.shape[1])


def selective_blur(codes, sigma: float, region: str = "highlights",
                   ramp: tuple[float, float] = (0.75, 0.9)):
    """Blur the highlights or the shadows of code values, leaving the mid-tones untouched.

    ``out = codes + w * (blur(codes) - codes)``; the weight ``w`` is a smoothstep of the
    Rec.709 luma of ``codes`` over ``ramp`` (see :class:`SelectiveBlur`): exactly 0, so
    ``out == codes``, on the mid-tone side of the ramp.

    Parameters
    ----------
    codes
        sRGB code values ``[..., H, W, 3]``.
    sigma
        Gaussian standard deviation in pixels (edges replicate).
    region
        ``'highlights'`` or ``'shadows'``.
    ramp
        Luma code values over which the weight goes from 0 to 1 (highlights) or 1 to 0.
    """
    if region not in ("highlights", "shadows"):
        raise ValueError(f"region must be 'highlights' or 'shadows', got {region!r}")
    image = to_tensor(codes)
    weight = _smoothstep(luminance(image), *ramp)
    weight = (weight if region == "highlights" else 1 - weight)[..., None]
    blurred = _unframes(_gaussian_blur(_frames(image), sigma), image)
    return image + weight * (blurred - image)


def _to_uint8(codes: torch.Tensor) -> np.ndarray:
    """8-bit codes, rounded in float32 at least (bfloat16 cannot hold 255 steps)."""
    wide = codes.detach().to(torch.promote_types(codes.dtype, torch.float32))
    return (wide.clamp(0.0, 1.0) * 255).round().to(torch.uint8).cpu().numpy()


def _from_uint8(pixels: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(pixels).to(device=like.device, dtype=like.dtype) / 255


def jpeg_compress(codes, quality: int) -> tuple[torch.Tensor, int]:
    """JPEG-compress sRGB code values with Pillow; return the decoded codes and the bytes.

    Each frame is rounded to 8 bits, saved with ``Image.save(format='JPEG',
    quality=quality)`` (Pillow's defaults: 4:2:0 chroma) and decoded; the size is the total
    over frames.
    """
    from PIL import Image

    image = to_tensor(codes)
    frames = _to_uint8(image).reshape(-1, *image.shape[-3:])
    decoded, size = [], 0
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=int(quality))
        size += buffer.tell()
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return _from_uint8(np.stack(decoded), image).reshape(image.shape), size


def h264_compress(codes, crf: int, preset: str = "medium",
                  frames_per_second: int = 24) -> tuple[torch.Tensor, int]:
    """Encode code values ``[..., H, W, 3]`` (one clip) as H.264 in MP4; decode them back.

    libx264 through PyAV (``pip install av``), yuv420p, constant rate factor ``crf``; odd
    sizes are padded by edge replication and cropped back. Encoding runs on one thread
    with macroblock-tree rate control off (``mbtree=0``): with either on, libx264's
    bitstream varies from run to run, which would break reproducibility by seed. Returns
    the decoded codes and the MP4's size in bytes.
    """
    import av

    image = to_tensor(codes)
    frames = _to_uint8(image).reshape(-1, *image.shape[-3:])
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=frames_per_second)
        stream.width, stream.height = padded.shape[2], padded.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(int(crf)), "preset": preset, "x264-params": "mbtree=0"}
        for frame in padded:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    size = buffer.tell()
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    clip = np.stack(decoded)[:, :height, :width]
    return _from_uint8(clip, image).reshape(image.shape), size


def quantise(codes, bit_depth: int = 8):
    """Round code values in [0, 1] to ``bit_depth`` bits (clipping to [0, 1]).

    >>> quantise(torch.tensor([0.5, 1.2]), 8)
    tensor([0.5020, 1.0000])
    """
    levels = 2**bit_depth - 1
    return (to_tensor(codes).clamp(0.0, 1.0) * levels).round() / levels


def downscale_reference(codes, factor: int):
    """Shrink SDR reference pictures ``[..., H, W, 3]`` by an integer ``factor`` with an
    area (box) filter: each output pixel is the mean of a ``factor`` x ``factor`` block,
    as LTX's IC-LoRA references are downscaled (``reference_downscale_factor``).

    >>> downscale_reference(torch.arange(16.0).reshape(4, 4, 1).expand(4, 4, 3), 2)[..., 0]
    tensor([[ 2.5000,  4.5000],
            [10.5000, 12.5000]])
    """
    codes = to_tensor(codes)
    if factor < 1 or codes.shape[-3] % factor or codes.shape[-2] % factor:
        raise ValueError(f"reference {codes.shape[-2]}x{codes.shape[-3]} cannot be shrunk by "
                         f"factor {factor}: the factor must be >= 1 and divide both sides")
    if factor == 1:
        return codes
    planes = codes.reshape(-1, *codes.shape[-3:]).permute(0, 3, 1, 2)
    small = F.avg_pool2d(planes, factor)
    return small.permute(0, 2, 3, 1).reshape(*codes.shape[:-3], *small.shape[-2:], 3)


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    names = ("tone_map",) + _STEPS
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children,
                                                                        strict=True)}


def degrade_pair(hdr, config: DegradationConfig | None = None,
                 seed: int = 0) -> DegradedPair:
    """Make a training pair: the (exposure-shifted) HDR and a degraded SDR reference.

    Parameters
    ----------
    hdr
        Scene-linear Rec.709 ``[H, W, 3]`` or a clip ``[T, H, W, 3]`` (1.0 = diffuse white).
        A clip gets one draw of every parameter (fresh noise per frame) and is
        H.264-encoded as one video.
    config
        The tone mappers and each degradation's probability and strength (None: the
        defaults of :class:`DegradationConfig`).
    seed
        Seed of every random draw; the same seed and config give the same pair.

    Returns
    -------
    :class:`DegradedPair`: ``hdr`` (scene-linear, shifted when ``exposure`` applied),
    ``sdr_reference`` (sRGB code values in [0, 1], as ComfyUI loads an SDR image) and
    ``applied``, the steps taken with their parameters, in order.

    References
    ----------
    Seed 001 (LumiVid) and seed 004 (DiffHDR) degradation pipelines; LumiPic model card
    (noise parameters).

    >>> pair = degrade_pair(torch.full((8, 8, 3), 0.18), DegradationConfig.clean())
    >>> [step.name for step in pair.applied], round(float(pair.sdr_reference[0, 0, 0]), 4)
    (['tone_map'], 0.6335)
    """
    source = to_tensor(hdr)
    if source.ndim not in (3, 4) or source.shape[-1] != 3:
        raise ValueError(f"hdr must be RGB [H, W, 3] or a clip [T, H, W, 3], got shape "
                         f"{tuple(source.shape)}")
    config = DegradationConfig() if config is None else config
    rngs = _rngs(seed)
    drawn = {name: getattr(config, name).draw(rngs[name]) for name in _STEPS
             if rngs[name].random() < getattr(config, name).probability}
    operator = config.tone_mappers[int(rngs["tone_map"].integers(len(config.tone_mappers)))]
    applied = [AppliedDegradation("tone_map", {"operator": operator})]
    sdr = to_tensor(get_tone_mapper(operator)(source))

    def step(name: str) -> dict | None:
        if name in drawn:
            applied.append(AppliedDegradation(name, drawn[name]))
        return drawn.get(name)

    if params := step("exposure"):
        source, sdr = apply_stops(source, params["stops"]), apply_stops(sdr, params["stops"])
    if params := step("shadow_noise"):
        noise = config.shadow_noise
        sdr = add_shadow_noise(sdr, shot=noise.shot, read=noise.read,
                               chroma_ratio=noise.chroma_ratio,
                               highpass_kernel=noise.highpass_kernel, scale=params["scale"],
                               generator=torch.Generator().manual_seed(params["seed"]))
    if params := step("white_balance"):
        sdr = apply_white_balance(sdr, params["gains"])
    codes = srgb_encode(sdr.clamp(0.0, 1.0))
    if params := step("contrast"):
        codes = scale_contrast(codes, params["scale"])
    for name in ("highlight_blur", "shadow_blur"):
        if params := step(name):
            blur = getattr(config, name)
            codes = selective_blur(codes, params["sigma"], blur.region, blur.ramp)
    if params := step("jpeg"):
        codes, params["bytes"] = jpeg_compress(codes, params["quality"])
    if params := step("h264"):
        codes, params["bytes"] = h264_compress(codes, params["crf"], params["preset"])
    if params := step("quantisation"):
        codes = quantise(codes, params["bit_depth"])
    return DegradedPair(source, codes.to(torch.float32), applied)

