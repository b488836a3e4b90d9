"""Render the README's pictures from the library itself (no hand-made images).

    .venv/bin/python scripts/make_readme_images.py

docs/chart_stops.png: the HDR test chart at -4, 0 and +4 stops, each shown the simplest
honest way (exposure, then the sRGB display encoding, clipped at display white).
docs/demo_stops.png: the demo's EXR (``bash scripts/demo.sh`` writes it) at -4, -2, 0, +2
and +4 stops, when a path to it is given:

    .venv/bin/python scripts/make_readme_images.py demo-output/output/hdr/demo_00001_.exr
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from comfyui_hdr.hdr import charts, exposure, exr, transfer

DOCS = Path(__file__).resolve().parent.parent / "docs"


def display_srgb(scene_linear: np.ndarray) -> np.ndarray:
    """8-bit sRGB of scene-linear light, clipped at display white (for pictures only)."""
    code = transfer.srgb_encode(np.clip(scene_linear, 0.0, 1.0))
    return np.round(code * 255.0).astype(np.uint8)


def exposure_strip(scene_linear: np.ndarray, stops: tuple[float, ...], gap: int = 8,
                   zoom: int = 1) -> Image.Image:
    height, width = scene_linear.shape[0] * zoom, scene_linear.shape[1] * zoom
    label_height = 26
    strip = Image.new("RGB", (len(stops) * width + (len(stops) - 1) * gap, height + label_height),
                      (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    for index, stop in enumerate(stops):
        left = index * (width + gap)
        frame = display_srgb(exposure.apply_stops(scene_linear, stop))
        picture = Image.fromarray(frame).resize((width, height), Image.NEAREST)
        strip.paste(picture, (left, label_height))
        draw.text((left + 6, 6), f"{stop:+g} stops", fill=(235, 235, 235))
    return strip


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    chart = charts.test_chart(width=480, height=270).numpy()
    exposure_strip(chart, (-4.0, 0.0, 4.0)).save(DOCS / "chart_stops.png", optimize=True)
    print(f"wrote {DOCS / 'chart_stops.png'}")
    if len(sys.argv) > 1:
        demo = exr.read_exr(sys.argv[1]).pixels
        zoom = max(1, 240 // demo.shape[0])  # the demo frame is tiny: show its pixels big
        exposure_strip(demo, (-8.0, -4.0, 0.0, 4.0), zoom=zoom).save(DOCS / "demo_stops.png",
                                                                     optimize=True)
        print(f"wrote {DOCS / 'demo_stops.png'}")


if __name__ == "__main__":
    main()
