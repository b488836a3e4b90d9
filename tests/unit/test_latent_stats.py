"""Latent statistics: the streaming float64 accumulator against numpy, the latent format
round trip, the JSON in the VAE folder, and the ``latent-stats`` command.

Oracles: numpy's float64 ``mean``/``std`` (ddof 0) of the very same float32 values, and the
VAE's own encode of the same scenes.
"""

import json

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.models.hdr_vae import HDRAutoencoder, load_hdr_vae
from comfyui_hdr.hdr.models.latent_stats import (
    LATENT_STATS_FILE,
    LatentStatistics,
    LatentStatsAccumulator,
    latent_statistics,
    measure_latent_stats,
    read_latent_stats,
    write_latent_stats,
)
from comfyui_hdr.training.__main__ import main as training_main
from comfyui_hdr.training.data import ProceduralScenes
from comfyui_hdr.training.latent_stats import dataset_latent_stats

TINY = dict(block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, mid_block_add_attention=False)
FLOAT64 = 1e-12
"""Relative tolerance against numpy's float64 two-pass result: the batched Chan merge in
float64 differs from it by summation order only (~1e-15 measured)."""


def _latents(seed: int = 0) -> list[torch.Tensor]:
    """Uneven float32 batches of a 5-channel latent whose channel 3 sits 1000 std off zero,
    the case where a float32 sum / sum-of-squares loses the variance entirely."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.tensor([0.0, -2.0, 0.5, 1000.0, 3.0])[None, :, None, None]
    stds = torch.tensor([1.0, 0.1, 4.0, 1.0, 1e-3])[None, :, None, None]
    return [torch.randn((batch, 5, 3, 4), generator=generator) * stds + means
            for batch in (1, 4, 2, 7)]


@pytest.fixture(scope="module")
def saved_vae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    torch.manual_seed(3)
    HDRAutoencoder(**TINY).save_pretrained(folder, safe_serialization=True)
    return folder


def test_streamed_statistics_match_numpy_float64_on_the_same_values():
    latents = _latents()
    stats = latent_statistics(latents)
    values = np.concatenate([latent.numpy().astype(np.float64).transpose(1, 0, 2, 3)
                             .reshape(5, -1) for latent in latents], axis=1)
    np.testing.assert_allclose(stats.mean, values.mean(axis=1), rtol=FLOAT64, atol=0)
    np.testing.assert_allclose(stats.std, values.std(axis=1), rtol=FLOAT64, atol=0)
    assert stats.count == values.shape[1] == 14 * 12
    # Batch boundaries do not matter: one batch of everything gives the same numbers.
    whole = latent_statistics([torch.cat(latents)])
    np.testing.assert_allclose(whole.std, stats.std, rtol=FLOAT64, atol=0)


def test_process_in_gives_unit_variance_and_process_out_inverts_it_on_video_latents():
    latents = _latents(1)
    stats = latent_statistics(latents)
    normalised = [stats.process_in(latent) for latent in latents]
    unit = latent_statistics(normalised)
    # float32 arithmetic on values up to 1000: 1e-4 of a unit std.
    np.testing.assert_allclose(unit.mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(unit.std, 1.0, atol=1e-4)
    video = latents[2][:, :, None]  # [B, C, T, H, W]: per channel, whatever follows
    back = stats.process_out(stats.process_in(video))
    assert back.dtype == video.dtype and back.shape == video.shape
    # Relative float32 rounding of the largest value (1000): 2 ulp.
    assert (back - video).abs().max().item() <= 2 * 1000 * 2.0**-23 * 2
    with pytest.raises(ValueError, match="for 5-channel latents"):
        stats.process_in(torch.zeros(1, 4, 2, 2))


def test_bad_statistics_and_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        LatentStatistics(mean=(0.0,), std=(1.0, 1.0), count=1)
    with pytest.raises(ValueError, match="channels \\[1\\] are not finite"):
        LatentStatistics(mean=(0.0, float("nan")), std=(1.0, 1.0), count=1)
    accumulator = LatentStatsAccumulator()
    with pytest.raises(ValueError, match="no latents were measured"):
        accumulator.result()
    accumulator.update(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="the latent has 3 channels, the earlier ones 2"):
        accumulator.update(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="NaN or inf; encode in float32"):
        accumulator.update(torch.full((1, 2, 2, 2), float("inf")))
    # A constant channel keeps a positive std instead of dividing by zero later.
    assert accumulator.result().std == (1e-6, 1e-6)


def test_statistics_file_round_trips_and_a_bad_one_names_the_command(tmp_path):
    stats = latent_statistics(_latents())
    path = write_latent_stats(tmp_path, stats, {"kind": "test"})
    assert path == tmp_path / LATENT_STATS_FILE
    assert read_latent_stats(tmp_path) == stats  # JSON floats round-trip exactly
    assert [p.name for p in tmp_path.iterdir()] == [LATENT_STATS_FILE]  # no temporary left
    assert read_latent_stats(tmp_path / "missing") is None
    payload = json.loads(path.read_text())
    path.write_text(json.dumps({**payload, "std": payload["std"][:2]}))
    with pytest.raises(ValueError, match="not valid latent statistics .* latent-stats --vae"):
        read_latent_stats(tmp_path)


def test_load_hdr_vae_carries_the_folder_s_statistics_and_refuses_other_channel_counts(
        saved_vae, tmp_path):
    assert load_hdr_vae(saved_vae).latent_stats is None
    folder = tmp_path / "vae"
    folder.mkdir()
    for path in saved_vae.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    stats = LatentStatistics(mean=(0.5,) * 32, std=(2.0,) * 32, count=4)
    write_latent_stats(folder, stats)
    assert load_hdr_vae(folder).latent_stats == stats
    write_latent_stats(folder, LatentStatistics(mean=(0.0,) * 16, std=(1.0,) * 16, count=4))
    with pytest.raises(ValueError, match="statistics of 16 channels but the VAE's latent has 32"):
        load_hdr_vae(folder)


def test_latent_stats_command_measures_the_vae_s_own_encodes(saved_vae, tmp_path, capsys):
    folder = tmp_path / "vae"
    folder.mkdir()
    for path in saved_vae.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    command = ["latent-stats", "--vae", str(folder), "--procedural", "5", "--size", "32",
               "--crop", "16", "--batch-size", "2"]
    assert training_main(command) == 0
    assert "32 channels over 320 values per channel" in capsys.readouterr().out
    written = read_latent_stats(folder)
    vae = load_hdr_vae(saved_vae)
    scenes = ProceduralScenes(5, 32, crop=16, random_crop=False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(scenes[index]["hdr"].permute(0, 3, 1, 2)).mode()
                             for index in range(5)])
    oracle = latents.double().movedim(1, 0).flatten(1)
    # The command encodes in batches of 2, the oracle one scene at a time: float32 conv
    # kernels sum in another order (2.3e-8 measured on O(0.2) means), hence 1e-6.
    np.testing.assert_allclose(written.mean, oracle.mean(1).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(written.std, oracle.std(1, correction=0).numpy(), rtol=1e-5)
    # The library call on the same scenes in one batch: equal to float32 encode rounding.
    whole = measure_latent_stats(vae, [torch.cat([scenes[index]["hdr"].permute(0, 3, 1, 2)
                                                  for index in range(5)])])
    np.testing.assert_allclose(whole.std, dataset_latent_stats(vae, scenes, 2).std, rtol=1e-5)
    # Never replaced unless asked; bad input exits 2 and names the fix.
    assert training_main(command) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert training_main([*command, "--overwrite", "--items", "0"]) == 2
    assert "at least one item" in capsys.readouterr().err
