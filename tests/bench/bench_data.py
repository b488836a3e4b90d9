"""Benchmark the training data loader: EXR decode, crops and degradations, in frames/s.

Run: ``.venv/bin/python tests/bench/bench_data.py``. Writes a 24-frame 512x512 float EXR
sequence of procedural scenes (their suns exceed half's range) to a temp folder, then
times (best of a few runs, in one process, interleaved) raw ``read_exr`` of every frame,
the dataset with a 256 crop, the dataset with the default degradations (tone map, noise,
blur, JPEG, H.264, ...), as single frames and as 8-frame clips, and procedural scenes
rendered on the fly. Prints frames/s and each path's time relative to the raw decode; no
asserts. Compare the degraded rate with ``train-lora``'s step rate to see whether data
loading is the bottleneck (DataLoader workers scale it by about the number of cores).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _bench import best_times

from comfyui_hdr.hdr.degrade import DegradationConfig
from comfyui_hdr.hdr.exr import read_exr, write_exr
from comfyui_hdr.hdr.scenes import hdr_scene
from comfyui_hdr.training.data import ExrFolderDataset, ProceduralScenes

FRAMES, SIZE, CROP, RUNS = 24, 512, 256, 3


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        shot = Path(folder) / "shot"
        shot.mkdir()
        paths = [write_exr(shot / f"frame_{index:05d}.exr", hdr_scene(index, SIZE).numpy(),
                           pixel_type="float")
                 for index in range(1, FRAMES + 1)]
        cropped = ExrFolderDataset(folder, crop=CROP)
        degraded = ExrFolderDataset(folder, crop=CROP, degradation=DegradationConfig())
        clips = ExrFolderDataset(folder, frames_per_clip=8, crop=CROP,
                                 degradation=DegradationConfig())
        scenes = ProceduralScenes(FRAMES, CROP, degradation=DegradationConfig())
        times = best_times(dict(
            raw_read_exr=lambda: [read_exr(path) for path in paths],
            dataset_crop=lambda: [cropped[i] for i in range(len(cropped))],
            dataset_crop_degrade=lambda: [degraded[i] for i in range(len(degraded))],
            dataset_8_frame_clips_degrade=lambda: [clips[i] for i in range(len(clips))],
            procedural_degrade=lambda: [scenes[i] for i in range(len(scenes))],
        ), RUNS)
    print(f"{FRAMES} frames {SIZE}x{SIZE} float EXR, crop {CROP}, best of {RUNS}, one process")
    for name, seconds in times.items():
        print(f"{name:32s} {FRAMES / seconds:8.1f} frames/s   "
              f"{seconds / times['raw_read_exr']:5.2f}x raw decode time")


if __name__ == "__main__":
    main()
