"""The input files the shipped workflows read, made by the library (no downloads).

``plates/chart_0000N_.exr``: the HDR test chart at sun 8, 9 and 10 stops, float EXR, for
``exr_sequence_exposure_layers``; ``ultrahdr_example.jpg``: the chart at sun 5 stops as an
Ultra HDR JPEG, for ``ultrahdr_to_exr``. Used by ``scripts/make_templates.py`` and the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..hdr import charts, exr_sequence, ultrahdr

PLATE_SUN_STOPS = (8.0, 9.0, 10.0)
ULTRAHDR_SUN_STOPS = 5.0


def write_example_inputs(input_dir: str | Path) -> dict:
    """Write the example inputs into a ComfyUI input folder (kept if already there).

    Returns ``{"plates": frames [3, 72, 128, 3], "ultrahdr": path of the JPEG}``.
    """
    input_dir = Path(input_dir)
    plates = input_dir / "plates"
    frames = np.stack([charts.test_chart(width=128, height=72, sun_stops=stops).numpy()
                       for stops in PLATE_SUN_STOPS])
    if not plates.exists():
        plates.mkdir(parents=True)
        exr_sequence.write_exr_sequence(plates, "chart", frames, start_frame=1, pixel_type="float")
    jpeg = input_dir / "ultrahdr_example.jpg"
    if not jpeg.exists():
        ultrahdr.write_ultrahdr(jpeg, charts.test_chart(width=256, height=144,
                                                        sun_stops=ULTRAHDR_SUN_STOPS))
    return {"plates": frames, "ultrahdr": jpeg}


def prepare_server(input_dir: str | Path, models_dir: str | Path) -> dict:
    """Everything the shipped workflows read: the example inputs, the tiny model sets
    (``harness.tiny_models``), the demo's trained HDR VAE (``harness.demo_models``, a few
    CPU seconds of ``train-vae`` the first time) and the tiny Wan base with its LogC4 LoRA
    (``harness.lora_example``, a few CPU seconds of ``train-lora`` the first time) with the
    SDR picture the in-context LoRA workflow loads. Returns ``{"plates", "ultrahdr", "wan",
    "hdr", "lora", "sdr"}`` (``hdr`` also names the demo VAE as ``demo_vae``)."""
    from .demo_models import build_demo_models
    from .lora_example import write_sdr_example, write_tiny_loras
    from .tiny_models import write_tiny_wan_set

    return {**write_example_inputs(input_dir), "wan": write_tiny_wan_set(models_dir),
            "hdr": build_demo_models(models_dir), "lora": write_tiny_loras(models_dir),
            "sdr": write_sdr_example(input_dir)}
