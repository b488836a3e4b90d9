"""Call recipes for the colour maths of ``hdr/``: curves, gamuts, exposure, tone mapping,
gain maps, masks, merging, metrics, degradations and previews.

Each entry maps a qualified name (``module.function``) to ``recipe(device, tmp_path)``,
which returns the :class:`_contract.Case` that ``test_every_function.py`` checks.
"""

from __future__ import annotations

import torch
from _contract import call, codes, expect, scene

from comfyui_hdr.hdr import (
    alpha,
    degrade,
    exposure,
    gainmap,
    gamut,
    masks,
    merge,
    metrics,
    preview,
    tonemap,
    transfer,
    transfer_blockwise,
    transfer_camera,
    transfer_display,
    transfer_fused,
    transfer_learning,
)
from comfyui_hdr.hdr.degrade_config import DegradationConfig
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata


def _clip(device, frames: int = 3):
    return scene(device, (frames, 16, 16, 3), low=-4, high=4)


def _every_curve(image):
    """Each menu curve's encode, then its decode of that code (both with the menu's
    parameters)."""
    results = {}
    for name in transfer.CURVES:
        curve = transfer.get_curve(name)
        encoded = curve.encode(image, **curve.parameters)
        results[name] = (encoded, curve.decode(encoded, **curve.parameters))
    return results


def _every_tone_mapper(image):
    return {name: tonemap.get_tone_mapper(name)(image) for name in tonemap.TONE_MAPPERS}


def _brackets(device):
    base = codes(device, (1, 24, 24, 3), seed=3)[0]
    return torch.stack([base * 0.5, base, (base * 2).clamp(0, 1)])


def _shifted(device):
    frame = codes(device, (1, 32, 32, 3), seed=4)[0]
    return frame, torch.roll(frame, (3, -2), (0, 1))


def _seeded_noise(linear):
    """The same draw on every call (a generator is consumed by each call)."""
    return degrade.add_shadow_noise(linear, generator=torch.Generator().manual_seed(3))


_METADATA = GainMapMetadata(gain_map_min=-0.5, gain_map_max=3.0, alternate_hdr_headroom=3.0)
_PAIR_CONFIG = DegradationConfig.clean()

RECIPES = {
    # transfer curves: scene-linear in for encodes, code values in for decodes
    "transfer.get_curve": lambda d, t: call(_every_curve, scene(d, low=-6, high=5)),
    "transfer_blockwise.evaluate": lambda d, t: call(transfer_blockwise.evaluate, torch.sqrt,
                                                     scene(d)),
    "transfer_camera.logc3_encode": lambda d, t: call(transfer_camera.logc3_encode, scene(d)),
    "transfer_camera.logc3_decode": lambda d, t: call(transfer_camera.logc3_decode, codes(d)),
    "transfer_camera.logc4_encode": lambda d, t: call(transfer_camera.logc4_encode, scene(d)),
    "transfer_camera.logc4_decode": lambda d, t: call(transfer_camera.logc4_decode, codes(d)),
    "transfer_camera.acescct_encode": lambda d, t: call(transfer_camera.acescct_encode,
                                                        scene(d)),
    "transfer_camera.acescct_decode": lambda d, t: call(transfer_camera.acescct_decode,
                                                        codes(d)),
    "transfer_display.pq_eotf": lambda d, t: call(transfer_display.pq_eotf, codes(d)),
    "transfer_display.pq_inverse_eotf": lambda d, t: call(transfer_display.pq_inverse_eotf,
                                                          scene(d, low=-8, high=13)),
    "transfer_display.pq_encode": lambda d, t: call(transfer_display.pq_encode, scene(d)),
    "transfer_display.pq_decode": lambda d, t: call(transfer_display.pq_decode, codes(d)),
    "transfer_display.hlg_system_gamma": lambda d, t: expect(
        call(transfer_display.hlg_system_gamma, 1000.0), half="none"),
    "transfer_display.hlg_oetf": lambda d, t: call(transfer_display.hlg_oetf, codes(d)),
    "transfer_display.hlg_inverse_oetf": lambda d, t: call(transfer_display.hlg_inverse_oetf,
                                                           codes(d)),
    "transfer_display.hlg_ootf": lambda d, t: call(transfer_display.hlg_ootf, codes(d)),
    "transfer_display.hlg_inverse_ootf": lambda d, t: call(transfer_display.hlg_inverse_ootf,
                                                           scene(d, low=-4, high=9)),
    "transfer_display.hlg_eotf": lambda d, t: call(transfer_display.hlg_eotf, codes(d)),
    "transfer_display.hlg_inverse_eotf": lambda d, t: call(transfer_display.hlg_inverse_eotf,
                                                           scene(d, low=-4, high=9)),
    "transfer_display.hlg_encode": lambda d, t: call(transfer_display.hlg_encode, scene(d)),
    "transfer_display.hlg_decode": lambda d, t: call(transfer_display.hlg_decode, codes(d)),
    "transfer_display.srgb_encode": lambda d, t: call(transfer_display.srgb_encode, codes(d)),
    "transfer_display.srgb_decode": lambda d, t: call(transfer_display.srgb_decode, codes(d)),
    "transfer_learning.loggamma_encode": lambda d, t: call(transfer_learning.loggamma_encode,
                                                           scene(d)),
    "transfer_learning.loggamma_decode": lambda d, t: call(transfer_learning.loggamma_decode,
                                                           codes(d)),
    "transfer_learning.mulaw_encode": lambda d, t: call(transfer_learning.mulaw_encode, codes(d)),
    "transfer_learning.mulaw_decode": lambda d, t: call(transfer_learning.mulaw_decode, codes(d)),
    "transfer_learning.pu21_encode": lambda d, t: call(transfer_learning.pu21_encode,
                                                       scene(d, low=-7, high=13)),
    "transfer_learning.pu21_decode": lambda d, t: call(
        transfer_learning.pu21_decode, codes(d) * 500),
    # gamuts (matrices are numpy float64 constants: nothing to move)
    "gamut.get_gamut": lambda d, t: expect(call(gamut.get_gamut, "ACEScg"), half="none"),
    "gamut.rgb_to_xyz_matrix": lambda d, t: expect(call(gamut.rgb_to_xyz_matrix, "ap1"),
                                                   half="none"),
    "gamut.xyz_to_rgb_matrix": lambda d, t: expect(call(gamut.xyz_to_rgb_matrix, "ap1"),
                                                   half="none"),
    "gamut.chromatic_adaptation_matrix": lambda d, t: expect(
        call(gamut.chromatic_adaptation_matrix, gamut.D65, gamut.ACES_WHITE), half="none"),
    "gamut.rgb_to_rgb_matrix": lambda d, t: expect(
        call(gamut.rgb_to_rgb_matrix, "rec709", "rec2020"), half="none"),
    "gamut.luminance_weights": lambda d, t: expect(call(gamut.luminance_weights, "rec2020"),
                                                   half="none"),
    "gamut.convert_gamut": lambda d, t: call(gamut.convert_gamut, scene(d), "rec709", "ap1"),
    "gamut.luminance": lambda d, t: call(gamut.luminance, scene(d)),
    "gamut.rgb2020_to_ictcp": lambda d, t: call(gamut.rgb2020_to_ictcp, scene(d)),
    "gamut.ictcp_to_rgb2020": lambda d, t: call(
        gamut.ictcp_to_rgb2020, gamut.rgb2020_to_ictcp(scene(d))),
    "gamut.delta_e_itp": lambda d, t: call(
        gamut.delta_e_itp, gamut.rgb2020_to_ictcp(scene(d)),
        gamut.rgb2020_to_ictcp(scene(d, seed=5))),
    # exposure
    "exposure.apply_stops": lambda d, t: call(exposure.apply_stops, scene(d), 1.5),
    "exposure.stops_between": lambda d, t: call(exposure.stops_between, scene(d),
                                                scene(d, seed=6)),
    "exposure.to_stops": lambda d, t: call(exposure.to_stops, scene(d)),
    "exposure.hdr_stats": lambda d, t: expect(
        call(exposure.hdr_stats, scene(d)),
        compare=lambda stats: torch.tensor([value for value in stats.as_dict().values()
                                            if isinstance(value, float)])),
    # tone mapping
    "tonemap.reinhard": lambda d, t: call(tonemap.reinhard, scene(d), white=16.0),
    "tonemap.max_rgb": lambda d, t: call(tonemap.max_rgb, scene(d), tonemap.reinhard),
    "tonemap.bt2446a": lambda d, t: call(tonemap.bt2446a, codes(d)),
    "tonemap.bt2446c_curve": lambda d, t: call(tonemap.bt2446c_curve,
                                               scene(d, low=-4, high=12)),
    "tonemap.bt2446c": lambda d, t: call(tonemap.bt2446c, scene(d, low=-4, high=12)),
    "tonemap.bt2390_eetf": lambda d, t: call(tonemap.bt2390_eetf, codes(d)),
    "tonemap.aces2_sdr": lambda d, t: call(tonemap.aces2_sdr, scene(d)),
    "tonemap.get_tone_mapper": lambda d, t: call(_every_tone_mapper, scene(d, low=-8, high=12)),
    # gain maps
    "gainmap.extract_gain_map": lambda d, t: call(
        gainmap.extract_gain_map, scene(d), scene(d, low=-6, high=0, seed=2), bits=None),
    "gainmap.gain_map_weight": lambda d, t: expect(
        call(gainmap.gain_map_weight, _METADATA, 1.5), half="none"),
    "gainmap.apply_gain_map": lambda d, t: call(
        gainmap.apply_gain_map, codes(d), codes(d, (2, 8, 8, 1), seed=7), _METADATA, 2.0),
    # exposure masks of an sRGB clip
    "masks.soft_exposure_masks": lambda d, t: expect(
        call(masks.soft_exposure_masks, codes(d, (3, 16, 16, 3))), dtype="float32"),
    "masks.stabilise_mask": lambda d, t: call(masks.stabilise_mask, codes(d, (3, 16, 16))),
    "masks.exposure_masks": lambda d, t: expect(
        call(masks.exposure_masks, codes(d, (3, 16, 16, 3))), dtype="float32"),
    # brackets
    "merge.estimate_translation": lambda d, t: expect(
        call(merge.estimate_translation, *_shifted(d)),
        compare=lambda shift: torch.tensor(shift, dtype=torch.float64)),
    "merge.merge_brackets": lambda d, t: call(merge.merge_brackets, _brackets(d),
                                              [-1.0, 0.0, 1.0], align="phase", radius=4),
    # metrics: Python floats out, computed in float64 from the inputs
    "metrics.pu21_psnr": lambda d, t: call(metrics.pu21_psnr, scene(d), scene(d, seed=5)),
    "metrics.pu21_ssim": lambda d, t: call(metrics.pu21_ssim, scene(d), scene(d, seed=5)),
    "metrics.delta_e_itp_mean": lambda d, t: call(metrics.delta_e_itp_mean, scene(d),
                                                  scene(d, seed=5)),
    "metrics.pq_psnr": lambda d, t: call(metrics.pq_psnr, scene(d), scene(d, seed=5)),
    "metrics.cvvdp_jod": lambda d, t: call(metrics.cvvdp_jod, scene(d, (16, 16, 3)),
                                           scene(d, (16, 16, 3), seed=5)),
    "metrics.flicker": lambda d, t: call(metrics.flicker, _clip(d)),
    "metrics.frame_to_frame_psnr": lambda d, t: call(metrics.frame_to_frame_psnr, _clip(d)),
    "metrics.peak_luminance": lambda d, t: call(metrics.peak_luminance, _clip(d)),
    "metrics.dynamic_range_stops": lambda d, t: call(metrics.dynamic_range_stops, _clip(d),
                                                     low_percentile=1.0),
    "metrics.hdr_metrics": lambda d, t: expect(
        call(metrics.hdr_metrics, _clip(d), _clip(d) * 1.1),
        compare=lambda results: torch.tensor(list(results.values()))),
    # degradations of an SDR reference
    "degrade.add_shadow_noise": lambda d, t: call(_seeded_noise, codes(d)),
    "degrade.apply_white_balance": lambda d, t: call(degrade.apply_white_balance, codes(d),
                                                     (1.2, 1.0, 0.8)),
    "degrade.scale_contrast": lambda d, t: call(degrade.scale_contrast, codes(d), 1.4),
    "degrade.selective_blur": lambda d, t: call(degrade.selective_blur, codes(d), 1.5),
    "degrade.jpeg_compress": lambda d, t: call(degrade.jpeg_compress, codes(d), 80),
    "degrade.h264_compress": lambda d, t: call(degrade.h264_compress, codes(d), 23,
                                               preset="ultrafast"),
    "degrade.quantise": lambda d, t: call(degrade.quantise, codes(d), 8),
    "degrade.downscale_reference": lambda d, t: call(degrade.downscale_reference, codes(d), 2),
    # the SDR reference is float32 (what ComfyUI loads); the HDR keeps the input's dtype
    "degrade.degrade_pair": lambda d, t: expect(
        call(degrade.degrade_pair, scene(d, (16, 16, 3)), _PAIR_CONFIG, seed=3), dtype="any"),
    # viewer proxies: numpy on the CPU by design (they are written to files)
    "preview.proxy_size": lambda d, t: expect(call(preview.proxy_size, 1080, 1920, 512),
                                              half="none"),
    "preview.float_proxy": lambda d, t: expect(call(preview.float_proxy, scene(d)[0], 8),
                                               output="cpu"),
    "preview.sdr_picture": lambda d, t: expect(call(preview.sdr_picture, codes(d)[0]),
                                               output="cpu"),
    "preview.srgb_picture": lambda d, t: expect(call(preview.srgb_picture, scene(d)[0]),
                                                output="cpu"),
    "preview.area_downsample": lambda d, t: call(preview.area_downsample, scene(d)[0], 5, 7),
    "preview.srgb_picture_of_proxy": lambda d, t: expect(
        call(preview.srgb_picture_of_proxy, preview.float_proxy(scene(d)[0], 8)),
        output="cpu", half="none"),
    "exposure.percentile_rank_tolerance": lambda d, t: expect(
        call(exposure.percentile_rank_tolerance, 99.0), half="none"),
    # the fused kernels' building blocks (eager outside a compiled kernel), and the
    # dispatcher, which leaves frames under its size threshold to the eager path (None)
    "transfer_fused.power": lambda d, t: call(transfer_fused.power, scene(d), 1 / 2.4),
    "transfer_fused.exp10": lambda d, t: call(transfer_fused.exp10, codes(d) - 0.5),
    "transfer_fused.run": lambda d, t: expect(
        call(transfer_fused.run, torch.exp2, scene(d), (), torch.float32, 3), half="none"),
    # alpha in core's MASK polarity, and (un)premultiplied colour
    "alpha.alpha_from_mask": lambda d, t: call(alpha.alpha_from_mask, codes(d)[..., 0]),
    "alpha.mask_from_alpha": lambda d, t: call(alpha.mask_from_alpha, codes(d)[..., 0]),
    "alpha.premultiply": lambda d, t: call(alpha.premultiply, scene(d), codes(d)[..., 0]),
    "alpha.unpremultiply": lambda d, t: call(alpha.unpremultiply, scene(d), codes(d)[..., 0]),
}
