"""The evaluate CLI end to end on tiny folders: pairing by name across EXR, .npy and EXR
folders, the CSV's numbers against hdr.metrics, the plot, no-clobber and bad input."""

import csv
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from comfyui_hdr.hdr import metrics
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.scenes import hdr_scenes
from comfyui_hdr.training.evaluate import main


@pytest.fixture
def folders(tmp_path):
    """gt: a.exr, b.npy (clip of 3), c/ (EXR folder, 2 frames); pred: the same names,
    stored differently (a.npy, b.npy, c/), each a slightly wrong version."""
    scenes = hdr_scenes(range(6), 16).numpy()
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    (gt / "c").mkdir(parents=True)
    (pred / "c").mkdir(parents=True)
    write_exr(gt / "a.exr", scenes[0], pixel_type="float")
    np.save(pred / "a.npy", scenes[0] * 1.05)
    np.save(gt / "b.npy", scenes[1:4])
    np.save(pred / "b.npy", scenes[1:4] * np.array([1.0, 1.1, 0.9])[:, None, None, None])
    for index in (0, 1):
        write_exr(gt / "c" / f"frame_{index:05d}.exr", scenes[4 + index], pixel_type="float")
        write_exr(pred / "c" / f"frame_{index:05d}.exr", scenes[4 + index] * 0.95,
                  pixel_type="float")
    (gt / "notes.txt").write_text("ignored")
    return {"gt": gt, "pred": pred, "scenes": scenes, "out": tmp_path / "out"}


def run(folders, *extra):
    return main(["--pred", str(folders["pred"]), "--gt", str(folders["gt"]),
                 "--out", str(folders["out"]), *extra])


def test_evaluate_writes_csv_and_plot_with_the_metrics_of_each_pair(folders, capsys):
    assert run(folders, "--nits-at-1", "203") == 0
    with open(folders["out"] / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["a", "b", "c", "overall"]
    assert [int(row["frames"]) for row in rows] == [1, 3, 2, 6]
    scenes = folders["scenes"].astype(np.float64)
    clip = scenes[1:4] * np.array([1.0, 1.1, 0.9])[:, None, None, None]
    # CSV text keeps Python's shortest round-trip repr of each float: exact.
    predicted_a = (folders["scenes"][0] * 1.05).astype(np.float64)  # saved as float32
    assert float(rows[0]["pu21_psnr"]) == metrics.pu21_psnr(predicted_a, scenes[0],
                                                            nits_at_1=203)
    assert float(rows[1]["flicker_test"]) == metrics.flicker(clip)
    assert float(rows[1]["f2f_psnr_reference"]) == metrics.frame_to_frame_psnr(
        scenes[1:4], nits_at_1=203)
    assert math.isnan(float(rows[0]["flicker_test"]))
    # EXR frames are stored as float32: c's inputs are exact, the metric in float64.
    expected_c = metrics.pq_psnr((scenes[4:6].astype(np.float32) * np.float32(0.95))
                                 .astype(np.float64), scenes[4:6], nits_at_1=203)
    assert float(rows[2]["pq_psnr"]) == pytest.approx(expected_c, rel=1e-12)
    overall = np.mean([float(row["delta_e_itp"]) for row in rows[:3]])
    assert float(rows[3]["delta_e_itp"]) == pytest.approx(overall, rel=1e-12)
    assert float(rows[3]["flicker_test"]) == pytest.approx(
        np.mean([float(rows[1]["flicker_test"]), float(rows[2]["flicker_test"])]), rel=1e-12)
    with Image.open(folders["out"] / "metrics.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    printed = capsys.readouterr().out
    assert "pu21_psnr" in printed and "overall" in printed and "metrics.png" in printed


def test_evaluate_never_overwrites_without_the_flag(folders, capsys):
    assert run(folders) == 0
    written = (folders["out"] / "metrics.csv").read_bytes()
    assert run(folders, "--nits-at-1", "1000") == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (folders["out"] / "metrics.csv").read_bytes() == written
    assert run(folders, "--nits-at-1", "1000", "--overwrite") == 0
    assert (folders["out"] / "metrics.csv").read_bytes() != written


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f["pred"] / "a.npy").unlink(), "no counterpart for a"),
    (lambda f: np.save(f["pred"] / "a.npy", np.zeros((8, 8, 3))), "differ in shape"),
    (lambda f: np.save(f["pred"] / "c.npy", np.zeros((2, 16, 16, 3))), "holds both"),
    (lambda f: np.save(f["pred"] / "b.npy", np.zeros((16, 16))), "expected RGB"),
])
def test_bad_folders_exit_2_with_a_message(folders, capsys, damage, message):
    damage(folders)
    assert run(folders) == 2
    assert message in capsys.readouterr().err
    assert not folders["out"].exists()


def test_module_runs_as_a_command(folders):
    result = subprocess.run(
        [sys.executable, "-m", "comfyui_hdr.training.evaluate", "--pred",
         str(folders["pred"]), "--gt", str(folders["gt"]), "--out", str(folders["out"])],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (folders["out"] / "metrics.csv").is_file()
