"""``transform-analysis`` (seed 001, LumiVid Table 1) on a tiny VAE trained here on SDR.

The VAE is a diffusers ``AutoencoderKL`` with two blocks of width 8 (2x downsampling, 4
latent channels), trained for 40 Adam steps to reconstruct the SDR renditions of 8
procedural scenes (32x32), so it is an SDR VAE rather than random weights. Oracles:
:func:`scipy.stats.entropy` of :func:`numpy.histogram` counts for the pixel KL,
:func:`~comfyui_hdr.hdr.metrics.pu21_psnr` on a round trip written out here for the
PU21-PSNR, and identical inputs (KL exactly 0). No test asserts an ordering of curves:
which curve wins depends on the VAE and the data.
"""

import contextlib
import csv
import io
import math

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderKLWan
from PIL import Image
from scipy.stats import entropy

from comfyui_hdr.hdr.degrade import DegradationConfig, degrade_pair
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.metrics import pu21_psnr
from comfyui_hdr.hdr.scenes import hdr_scenes
from comfyui_hdr.hdr.transfer import CURVES, get_curve, srgb_encode
from comfyui_hdr.training.transform_analysis import (
    ANALYSIS,
    DEFAULT_CURVES,
    analyze_transforms,
    format_table,
    latent_kl,
    main,
    pixel_kl,
)

SCENES, SIZE, BINS = 6, 32, 256
TRAINING_STEPS = 40
KL_TOLERANCE = 1e-9
"""Our float64 KL against scipy's on the same counts: both sum ~258 float64 terms, so
they agree to ~1e-15; 1e-9 leaves room for summation order only."""


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                         norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2)


def sdr_renditions(seeds, size: int = SIZE) -> torch.Tensor:
    """The SDR references the training makes: BT.2390 max-RGB, clipped, sRGB codes."""
    return degrade_pair(hdr_scenes(seeds, size), DegradationConfig.clean()).sdr_reference


def reconstruction_error(vae, pixels: torch.Tensor) -> float:
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    return float((decoded - pixels).square().mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny VAE after 40 Adam steps on SDR renditions of scenes 100-107, saved."""
    vae = tiny_vae()
    pixels = sdr_renditions(range(100, 108)).permute(0, 3, 1, 2) * 2 - 1
    before = reconstruction_error(vae, pixels)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(TRAINING_STEPS):
        decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample
        loss = (decoded - pixels).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = reconstruction_error(vae, pixels)
    folder = tmp_path_factory.mktemp("vae")
    vae.eval().save_pretrained(folder, safe_serialization=True)
    return {"folder": folder, "vae": vae.requires_grad_(False), "before": before,
            "after": after}


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(argument) for argument in argv])
    return code, out.getvalue(), err.getvalue()


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cli_rows(trained, tmp_path_factory):
    """The CLI's CSV on the trained VAE: procedural scenes 0-5, the default curves."""
    path = tmp_path_factory.mktemp("table") / "table.csv"
    code, out, err = run_cli("--vae", trained["folder"], "--scenes", SCENES, "--size", SIZE,
                             "--csv", path)
    assert code == 0, err
    return read_csv(path), out


def numpy_histogram(codes: np.ndarray, bins: int) -> np.ndarray:
    """Oracle counts: underflow, numpy's bins over [0, 1], overflow."""
    inside, _ = np.histogram(codes, bins=bins, range=(0.0, 1.0))
    return np.concatenate([[np.sum(codes < 0)], inside, [np.sum(codes > 1)]])


def oracle_kl(codes: np.ndarray, sdr: np.ndarray, bins: int = BINS) -> float:
    p, q = numpy_histogram(codes, bins), numpy_histogram(sdr, bins)
    return float(entropy(p / p.sum() + ANALYSIS.epsilon, q / q.sum() + ANALYSIS.epsilon))


def test_training_lowers_the_tiny_vaes_sdr_reconstruction_error(trained):
    # Measured: 0.508 at init -> 0.055 after 40 steps; a 4x drop shows it learned SDR.
    assert trained["after"] < trained["before"] / 4


def test_cli_table_has_one_finite_row_per_curve_in_the_given_order(cli_rows):
    rows, out = cli_rows
    assert [row["curve"] for row in rows] == list(DEFAULT_CURVES)
    for row in rows:
        for name in ("pixel_kl", "latent_kl", "roundtrip_pu21_psnr", "roundtrip_stops",
                     "headroom_stops"):
            assert math.isfinite(float(row[name])), (row["curve"], name)
        assert float(row["pixel_kl"]) > 0 and float(row["latent_kl"]) > 0
        assert float(row["headroom_stops"]) == pytest.approx(
            math.log2(CURVES[row["curve"]].linear_max), abs=1e-12)
    table_curves = [line.split()[0] for line in out.splitlines()[2:2 + len(DEFAULT_CURVES)]]
    assert table_curves == list(DEFAULT_CURVES)


def test_pixel_kl_matches_scipy_entropy_of_numpy_histograms(cli_rows):
    rows, _ = cli_rows
    hdr = hdr_scenes(range(SCENES), SIZE)
    sdr = sdr_renditions(range(SCENES)).numpy()
    for row in rows:
        curve = get_curve(row["curve"])
        codes = curve.encode(hdr, **curve.parameters).numpy()
        assert float(row["pixel_kl"]) == pytest.approx(oracle_kl(codes, sdr),
                                                       abs=KL_TOLERANCE), row["curve"]


def test_latent_kl_matches_scipy_entropy_of_numpy_histograms_per_channel(trained):
    vae, curve = trained["vae"], get_curve("logc4")
    sdr = sdr_renditions(range(SCENES))
    codes = curve.encode(hdr_scenes(range(SCENES), SIZE), **curve.parameters)
    with torch.no_grad():
        latents, sdr_latents = (vae.encode(x.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
                                .double().numpy() for x in (codes, sdr))
    expected = []
    for channel in range(sdr_latents.shape[1]):
        # Oracle: numpy's percentiles and histogram with explicit outlier bins, scipy's KL.
        low, high = np.percentile(sdr_latents[:, channel], ANALYSIS.latent_percentiles)
        counts = [np.concatenate([[np.sum(x < low)],
                                  np.histogram(x, bins=BINS, range=(low, high))[0],
                                  [np.sum(x > high)]])
                  for x in (latents[:, channel].ravel(), sdr_latents[:, channel].ravel())]
        p, q = (c / c.sum() + ANALYSIS.epsilon for c in counts)
        expected.append(entropy(p, q))
    assert latent_kl(torch.from_numpy(latents), torch.from_numpy(sdr_latents),
                     BINS) == pytest.approx(float(np.mean(expected)), abs=KL_TOLERANCE)


def test_kl_of_the_sdr_set_against_itself_is_zero(trained):
    sdr = sdr_renditions(range(SCENES))
    latents = trained["vae"].encode(sdr.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
    assert pixel_kl(sdr, sdr) == 0.0
    assert latent_kl(latents, latents) == 0.0


def test_roundtrip_pu21_psnr_equals_pu21_psnr_of_a_round_trip_written_out(trained):
    vae, curve = trained["vae"], get_curve("logc3")
    hdr = hdr_scenes(range(SCENES), SIZE)
    [row] = analyze_transforms(vae, hdr, sdr_renditions(range(SCENES)), curves=("logc3",),
                               batch_size=SCENES)
    pixels = curve.encode(hdr, **curve.parameters).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    linear = curve.decode(((decoded + 1) / 2).permute(0, 2, 3, 1).double(), **curve.parameters)
    expected = pu21_psnr(linear, hdr, nits_at_1=100.0, peak_nits=100.0)
    # The tool normalises latents (z * 0.18215) and undoes it before decoding: one float32
    # rounding of each latent, measured at 3e-7 dB of PSNR; 1e-5 dB allows for BLAS paths.
    assert row.roundtrip_pu21_psnr == pytest.approx(expected, abs=1e-5)


def test_a_curve_whose_codes_are_the_sdr_set_has_zero_kl_and_others_do_not(trained):
    # HDR clipped to [0, 1] and sRGB-encoded *is* the 'srgb' curve's encoding of it.
    hdr = hdr_scenes(range(SCENES), SIZE).clamp(0.0, 1.0)
    rows = analyze_transforms(trained["vae"], hdr, srgb_encode(hdr), curves=("srgb", "pq"))
    assert (rows[0].pixel_kl, rows[0].latent_kl) == (0.0, 0.0)
    assert rows[1].pixel_kl > 0 and rows[1].latent_kl > 0


def test_exr_and_sdr_folders_are_centre_cropped_and_read_as_code_values(trained, tmp_path):
    hdr_folder, sdr_folder = tmp_path / "exr", tmp_path / "sdr"
    hdr_folder.mkdir()
    sdr_folder.mkdir()
    scenes = hdr_scenes(range(2), 40, 48).numpy()
    for index, scene in enumerate(scenes):
        write_exr(hdr_folder / f"plate{index}.exr", scene, pixel_type="float")
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (2, 36, 44, 3), dtype=np.uint8)
    for index, photo in enumerate(photos):
        Image.fromarray(photo).save(sdr_folder / f"photo{index}.png")
    path = tmp_path / "table.csv"
    code, _, err = run_cli("--vae", trained["folder"], "--data", hdr_folder, "--sdr",
                           sdr_folder, "--size", SIZE, "--curves", "logc4", "--csv", path)
    assert code == 0, err
    crop = scenes[:, 4:36, 8:40]  # centre 32x32 of 40x48
    sdr = photos[:, 2:34, 6:38].astype(np.float32) / 255  # centre 32x32 of 36x44
    codes = get_curve("logc4").encode(crop)
    [row] = read_csv(path)
    assert float(row["pixel_kl"]) == pytest.approx(oracle_kl(codes, sdr), abs=KL_TOLERANCE)


@pytest.mark.parametrize(("argv", "message"), [
    (["--curves", "logc3,slog3"], "curve must be one of logc3, logc4"),
    (["--data", "{empty}"], "holds no .exr/.hdr/.pic files"),
    (["--sdr", "{empty}"], "holds no .png/.jpg/.jpeg files"),
    (["--data", "{missing}"], "is not a folder"),
    # 33 px: the 2x-downsampling VAE decodes 17 latent pixels to 34.
    (["--size", "33"], "use a --size the VAE's downsampling divides"),
    (["--scenes", "0"], "--scenes and --size must be at least 1"),
])
def test_bad_input_exits_2_naming_the_argument(trained, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [argument.format(empty=tmp_path / "empty", missing=tmp_path / "missing")
            for argument in argv]
    code, _, err = run_cli("--vae", trained["folder"], "--scenes", 2, "--size", SIZE, *argv)
    assert code == 2
    assert message in err


def test_a_16_bit_sdr_picture_is_refused_not_clipped(trained, tmp_path):
    from PIL import Image

    (tmp_path / "sdr").mkdir()
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(tmp_path / "sdr" / "deep.png")
    code, _, err = run_cli("--vae", trained["folder"], "--scenes", 2, "--size", SIZE,
                           "--sdr", tmp_path / "sdr")
    assert code == 2 and "must be 8-bit" in err and "deep.png" in err


def test_an_existing_csv_is_kept_unless_overwrite(trained, tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("keep")
    code, _, err = run_cli("--vae", trained["folder"], "--scenes", 2, "--size", SIZE,
                           "--curves", "logc4", "--csv", path)
    assert code == 2 and "exists; pass --overwrite" in err
    assert path.read_text() == "keep"
    code, _, err = run_cli("--vae", trained["folder"], "--scenes", 2, "--size", SIZE,
                           "--curves", "logc4", "--csv", path, "--overwrite")
    assert code == 0, err
    assert read_csv(path)[0]["curve"] == "logc4"


def test_a_vae_folder_without_config_exits_2(tmp_path):
    code, _, err = run_cli("--vae", tmp_path, "--scenes", 1, "--size", SIZE)
    assert code == 2
    assert "config.json is missing" in err


def test_wan_style_5d_vae_gives_finite_numbers(tmp_path):
    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(
        tmp_path, safe_serialization=True)
    path = tmp_path / "table.csv"
    code, _, err = run_cli("--vae", tmp_path, "--scenes", 2, "--size", SIZE, "--curves",
                           "logc3,pq", "--csv", path)
    assert code == 0, err
    for row in read_csv(path):
        assert all(math.isfinite(float(row[name])) for name in
                   ("pixel_kl", "latent_kl", "roundtrip_pu21_psnr", "roundtrip_stops"))


def test_format_table_keeps_the_rows_order_and_states_the_units(trained):
    hdr = hdr_scenes(range(2), SIZE)
    rows = analyze_transforms(trained["vae"], hdr, sdr_renditions(range(2)),
                              curves=("pq", "logc3"))
    lines = format_table(rows).splitlines()
    assert [line.split()[0] for line in lines[2:4]] == ["pq", "logc3"]
    assert "nats" in lines[4] and "100 nits" in lines[5]


def test_log_gamma_m_is_chosen_per_row_and_defaults_to_1000(trained, tmp_path):
    path = tmp_path / "m.csv"
    code, out, err = run_cli("--vae", trained["folder"], "--scenes", 2, "--size", SIZE,
                             "--curves", "loggamma,loggamma:ceiling=65536;gamma=2.2",
                             "--csv", path)
    assert code == 0, err
    rows = read_csv(path)
    assert [row["curve"] for row in rows] == ["loggamma", "loggamma:ceiling=65536,gamma=2.2"]
    # Headroom: log2(M) stops, 9.97 for the seed's M = 1000 and 16 for the code's 65536.
    assert float(rows[0]["headroom_stops"]) == pytest.approx(math.log2(1000.0), abs=1e-12)
    assert float(rows[1]["headroom_stops"]) == pytest.approx(16.0, abs=1e-12)
    assert float(rows[0]["pixel_kl"]) != float(rows[1]["pixel_kl"])
    assert "DiffHDR log-gamma (ceiling 65536)" in out
