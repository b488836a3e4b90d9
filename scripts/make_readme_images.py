"""Render the README's pictures from the library itself (no hand-made images).

    .venv/bin/python scripts/make_readme_images.py

docs/chart_stops.png: the HDR test chart at -4, 0 and +4 stops, each shown the simplest
honest way (exposure, then the sRGB display encoding, clipped at display white).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from comfyui_hdr.hdr import charts, exposure, transfer

DOCS = Path(__file__).resolve().parent.parent / "docs"


def display_srgb(scene_linear: np.ndarray) -> np.ndarray:
    """8-bit sRGB of scene-linear light, clipped at display white (for pictures only)."""
    code = transfer.srgb_encode(np.clip(scene_linear, 0.0, 1.0))
    return np.round(code * 255.0).astype(np.uint8)


def exposure_strip(scene_linear: np.ndarray, stops: tuple[float, ...], gap: int = 8) -> Image.Image:
    height, width = scene_linear.shape[:2]
    label_height = 26
    strip = Image.new("RGB", (len(stops) * width + (len(stops) - 1) * gap, height + label_height),
                      (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    for index, stop in enumerate(stops):
        left = index * (width + gap)
        frame = display_srgb(exposure.apply_stops(scene_linear, stop))
        strip.paste(Image.fromarray(frame), (left, label_height))
        draw.text((left + 6, 6), f"{stop:+g} stops", fill=(235, 235, 235))
    return strip


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    chart = charts.test_chart(width=480, height=270).numpy()
    exposure_strip(chart, (-4.0, 0.0, 4.0)).save(DOCS / "chart_stops.png", optimize=True)
    print(f"wrote {DOCS / 'chart_stops.png'}")


if __name__ == "__main__":
    main()
