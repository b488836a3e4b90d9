"""``train-vae`` on procedural scenes: it learns, resumes exactly, and writes what loads.

Every run is a tiny HDR VAE (block widths 32/64, one layer per block, no mid-block
attention: 2x compression) on 32x32 procedural scenes, so the file runs in well under a
minute on two CPU cores. Oracles: the issue's acceptance numbers (held-out error down
>= 40%, highlights within 1.5 stops), the uninterrupted run itself for resume, and bit
equality for what ``load_hdr_vae`` reads back.
"""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from comfyui_hdr.hdr.models.hdr_vae import load_hdr_vae
from comfyui_hdr.hdr.models.latent_stats import read_latent_stats
from comfyui_hdr.training.__main__ import main as training_main
from comfyui_hdr.training.common import LossLog, StepBatchSampler
from comfyui_hdr.training.data import ProceduralScenes
from comfyui_hdr.training.train_vae import build_parser, train_vae

TINY = ["--block-out-channels", "32,64", "--layers-per-block", "1", "--no-mid-block-attention"]
DATA = ["--procedural", "32", "--size", "32", "--crop", "32", "--heldout", "8"]
RUN = ["--batch-size", "8", "--learning-rate", "1e-3"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine: two OpenMP threads spin against the
    other jobs (measured 110 s vs 11 s for an 8-step run under load 7), one thread does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def arguments(output, *extra):
    return [*DATA, *TINY, *RUN, "--output", str(output), *map(str, extra)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """60 steps (about 10 s unloaded) with an extra highlight weight; its printout."""
    output = tmp_path_factory.mktemp("vae")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train_vae(build_parser().parse_args(arguments(
            output, "--steps", 60, "--checkpoint-every", 30, "--highlight-weight", 1.0)))
    return output, result, printed.getvalue()


def test_training_lowers_the_heldout_log2_error_by_40_percent_and_keeps_highlights_close(
        trained):
    _, result, printed = trained
    heldout = result.description["training"]["heldout"]
    before, after = heldout["before"], heldout["after"]
    drop = 1 - after["linear_stops"] / before["linear_stops"]
    print(f"held-out mean |log2 error| {before['linear_stops']:.3f} -> "
          f"{after['linear_stops']:.3f} stops ({100 * drop:.0f}% lower); highlights "
          f"{before['highlight_stops']:.3f} -> {after['highlight_stops']:.3f} stops")
    # Issue 6 acceptance: >= 40% lower on held-out scenes, highlights within 1.5 stops.
    # Measured: 6.76 -> 0.69 stops (90% lower), highlights 6.14 -> 0.79 stops (one thread;
    # 0.71 and 0.82 with two: float32 summation order).
    assert drop >= 0.40
    assert after["highlight_stops"] <= 1.5
    # The held-out scenes really hold highlights (sky, sunlit surfaces, lamps, the sun).
    assert after["highlight_fraction"] > 0.2
    # The run prints the same numbers it records.
    assert f"{before['linear_stops']:.3f} -> {after['linear_stops']:.3f} stops" in printed
    assert f"{after['highlight_stops']:.3f} stops off" in printed


def test_written_directory_loads_with_load_hdr_vae_and_decodes_identically(trained):
    output, result, _ = trained
    assert {"config.json", "diffusion_pytorch_model.safetensors", "hdr_vae.json", "loss.csv",
            "loss.png", "latent_stats.json", "checkpoint-30",
            "checkpoint-60"} <= {p.name for p in output.iterdir()}
    loaded = load_hdr_vae(output)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    z = torch.randn(2, 32, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, decoded = result.model.decode(z), loaded.decode(z)
    assert torch.equal(decoded.linear, expected.linear)
    assert torch.equal(decoded.display, expected.display)
    # The checkpoint's model is the final one too (saved at step 60).
    assert torch.equal(load_hdr_vae(output / "checkpoint-60" / "model").decode(z).linear,
                       expected.linear)


def test_latent_stats_json_holds_the_trained_encoder_s_statistics_over_the_training_set(
        trained):
    output, result, _ = trained
    written = read_latent_stats(output)
    assert written == result.model.latent_stats == load_hdr_vae(output).latent_stats
    assert written.channels == 32 and written.count == 32 * 16 * 16  # 32 scenes of 16x16
    # Oracle: the loaded model's encodes of the 32 training scenes, numpy float64 (ddof 0).
    scenes = ProceduralScenes(32, 32, 0, crop=32)
    with torch.no_grad():
        latents = torch.cat([load_hdr_vae(output).encode(
            scenes[index]["hdr"].permute(0, 3, 1, 2)).mode() for index in range(32)])
    values = latents.double().movedim(1, 0).flatten(1).numpy()
    # Batches of 8 in train-vae against one scene at a time here: float32 conv order only.
    np.testing.assert_allclose(written.mean, values.mean(1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(written.std, values.std(1), rtol=1e-4)


def test_hdr_vae_json_records_the_colour_encoding_and_the_training_data(trained):
    output, result, _ = trained
    recorded = json.loads((output / "hdr_vae.json").read_text())
    assert recorded == result.description
    encoding = recorded["colour_encoding"]
    assert encoding["diffuse_white"] == 1.0
    assert "scene-linear Rec.709" in encoding["input"]
    assert "unclamped" in encoding["linear_head"]
    # Measured on the 32 training scenes: 0.1th percentile 2^-3.6 -> -4; peak 2^16.1 -> 16
    # (a sun between 1e3 and 1e5), whole stops.
    assert encoding["normalisation_log2_range"] == [-4.0, 16.0]
    assert encoding["display_tone_mapper"] == "reinhard"
    assert recorded["latent_channels"] == 32 and recorded["dtype"] == "float32"
    assert recorded["training"]["data"] == {"kind": "procedural", "scenes": 32, "size": 32,
                                            "crop": 32, "seeds": [0, 31]}
    assert recorded["training"]["loss"]["highlight_weight"] == 1.0


def test_loss_csv_has_one_row_per_step_and_the_plot_is_a_png(trained):
    output, result, _ = trained
    rows = LossLog.read_csv(output / "loss.csv").rows
    assert [row["step"] for row in rows] == list(range(1, 61))
    assert rows == result.losses.rows
    assert set(rows[0]) == {"step", "total", "linear", "display", "kl"}
    # total = linear + display + 1e-6 kl (display weight 1), to float32 rounding.
    row = rows[-1]
    np.testing.assert_allclose(row["total"], row["linear"] + row["display"] + 1e-6 * row["kl"],
                               rtol=1e-6)
    with Image.open(output / "loss.png") as plot:
        assert plot.format == "PNG" and plot.width >= 600


def test_resume_from_the_halfway_checkpoint_reproduces_the_uninterrupted_loss_curve(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        whole = train_vae(build_parser().parse_args(arguments(
            tmp_path / "whole", "--steps", 8, "--checkpoint-every", 4)))
        # Stopped after step 4 (its checkpoint), then continued to 8 with --resume latest.
        train_vae(build_parser().parse_args(arguments(
            tmp_path / "split", "--steps", 4, "--checkpoint-every", 4)))
        resumed = train_vae(build_parser().parse_args(arguments(
            tmp_path / "split", "--steps", 8, "--checkpoint-every", 4, "--resume", "latest")))
    assert [row["step"] for row in resumed.losses.rows] == list(range(1, 9))
    curve = np.array([[row[name] for name in ("total", "linear", "display", "kl")]
                      for row in resumed.losses.rows])
    expected = np.array([[row[name] for name in ("total", "linear", "display", "kl")]
                         for row in whole.losses.rows])
    # Same batches, noise, weights, optimizer and RNG state: measured bit-identical;
    # the brief allows 1e-5 (relative, the KL term is ~1e3).
    np.testing.assert_allclose(curve, expected, rtol=1e-5, atol=0)
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-5,
                                   atol=1e-7)
    # Held-out "before" is the step-0 measurement, carried through the checkpoint.
    assert (resumed.description["training"]["heldout"]["before"]
            == whole.description["training"]["heldout"]["before"])


def test_warm_start_from_an_autoencoder_kl_folder_keeps_its_decoder(tmp_path):
    torch.manual_seed(1)
    source = AutoencoderKL(latent_channels=16, block_out_channels=(32, 64), layers_per_block=1,
                           down_block_types=("DownEncoderBlock2D",) * 2,
                           up_block_types=("UpDecoderBlock2D",) * 2).eval()
    source.save_pretrained(tmp_path / "kl")
    # Learning rate 0: AdamW leaves every weight (and its decay) where the warm start put it.
    with contextlib.redirect_stdout(io.StringIO()):
        result = train_vae(build_parser().parse_args([
            *DATA, "--init-from", str(tmp_path / "kl"), "--batch-size", "8", "--steps", "1",
            "--learning-rate", "0", "--output", str(tmp_path / "hdr")]))
    assert result.description["training"]["init_from"] == str(tmp_path / "kl")
    z = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        display = load_hdr_vae(tmp_path / "hdr").decode(torch.cat([z, torch.zeros_like(z)],
                                                                   dim=1)).display
        expected = source.decode(z).sample
    assert torch.equal(display, expected)


def test_multi_process_batches_split_each_global_batch_without_overlap():
    # Two processes (accelerate launch --num_processes 2) of 3 each = one global batch of 6
    # drawn from the same epoch permutation: disjoint, and an epoch covers every item once.
    per_process = [list(StepBatchSampler(12, 3, seed=5, start_step=0, total_steps=2,
                                         process_index=p, num_processes=2)) for p in range(2)]
    epoch = [index for batches in per_process for batch in batches for _, index in batch]
    assert sorted(epoch) == list(range(12))
    resumed = StepBatchSampler(12, 3, seed=5, start_step=1, total_steps=2, process_index=1,
                               num_processes=2)
    assert list(resumed) == per_process[1][1:]


def test_refusals_exit_with_code_2_and_name_the_fix(tmp_path, capsys, monkeypatch):
    def refused(*argv):
        assert training_main(["train-vae", *map(str, argv)]) == 2
        return capsys.readouterr().err

    assert "trains in float32 (fp32) only" in refused(
        *arguments(tmp_path / "a", "--mixed-precision", "bf16"))
    assert "not a multiple of 2" in refused(*DATA[:4], "--crop", 31, *TINY,
                                            "--output", tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("keep")
    assert "pass --resume latest" in refused(*arguments(tmp_path / "c"))
    assert "no checkpoint-<step> directory" in refused(*arguments(tmp_path / "c", "--resume",
                                                                  "latest"))
    (tmp_path / "kl").mkdir()
    (tmp_path / "kl" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    torch.save({}, tmp_path / "kl" / "diffusion_pytorch_model.bin")
    assert "pickle checkpoint" in refused(*DATA, "--init-from", tmp_path / "kl",
                                          "--output", tmp_path / "d")
    assert "drop --block-out-channels" in refused(*arguments(tmp_path / "e", "--init-from",
                                                             tmp_path / "kl"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert "accelerate launch --mixed_precision is fp16" in refused(*arguments(tmp_path / "f"))
    assert (tmp_path / "c" / "notes.txt").read_text() == "keep"


def test_python_m_runs_the_dispatcher_and_bad_input_exits_2(tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key != "ACCELERATE_MIXED_PRECISION"} | {"OMP_NUM_THREADS": "1"}
    usage = subprocess.run([sys.executable, "-m", "comfyui_hdr.training", "--help"],
                           capture_output=True, text=True, env=environment, check=True)
    assert all(command in usage.stdout
               for command in ("train-vae", "widen", "evaluate", "train-lora"))
    run = subprocess.run([sys.executable, "-m", "comfyui_hdr.training", "train-vae",
                          *arguments(tmp_path, "--mixed-precision", "fp16")],
                         capture_output=True, text=True, env=environment)
    assert run.returncode == 2
    assert "train-vae: error: --mixed-precision is fp16" in run.stderr
    unknown = subprocess.run([sys.executable, "-m", "comfyui_hdr.training", "train-everything"],
                             capture_output=True, text=True, env=environment)
    assert unknown.returncode == 2 and "unknown command 'train-everything'" in unknown.stderr
