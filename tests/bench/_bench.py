"""Shared pieces of the benchmark scripts: a test frame and an interleaved timer."""

from __future__ import annotations

import time

import numpy as np


def hdr_frame(height: int, width: int, low_stops: float = -5.0) -> np.ndarray:
    """A deterministic scene-linear frame: a 10-stop ramp from ``0.18 * 2**low_stops``, a
    soft light, and 1 % noise (so codecs cannot cheat on flat areas)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = 0.18 * 2.0 ** (10 * x / width + low_stops)
    light = 1 + 8 * np.exp(-((x - width / 3) ** 2 + (y - height / 2) ** 2) / (2 * 300.0**2))
    rgb = np.stack([ramp * light, 0.9 * ramp * light, 1.1 * ramp], -1)
    return (rgb * (1 + 0.01 * rng.standard_normal(rgb.shape, np.float32))).astype(np.float32)


def race(runs: int, *functions) -> list[float]:
    """Best time of each function over ``runs`` rounds, interleaved so that load from other
    processes on the machine hits every contender alike."""
    times = [[] for _ in functions]
    for _ in range(runs):
        for function, spent in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def best_times(methods: dict, rounds: int, warm_up: bool = False) -> dict[str, float]:
    """Best seconds of each named method over ``rounds`` interleaved rounds (optionally run
    once first to warm caches, the allocator and lazily built processors)."""
    if warm_up:
        for method in methods.values():
            method()
    return dict(zip(methods, race(rounds, *methods.values()), strict=True))
