"""``evaluate``: measure HDR predictions against ground truth, write a CSV and a plot.

    python -m comfyui_hdr.training.evaluate --pred DIR --gt DIR --out DIR [--nits-at-1 100]
    python -m comfyui_hdr.training evaluate --pred DIR --gt DIR --out DIR \
        --gamut rec2020 --nits-at-1 203 [--encoding pq]      # LumaFlux's outputs

Files in ``--pred`` and ``--gt`` pair by name: ``name.exr`` (one frame), ``name.npy``
(``[H, W, 3]`` or a clip ``[T, H, W, 3]``) or a folder ``name/`` of EXR frames (a clip, in
name order); a prediction and its ground truth may be stored differently. Both hold
linear light in ``--gamut`` (Rec.709, the pack's scene-linear, or BT.2020) with 1.0 shown
at ``--nits-at-1`` nits, or, with ``--encoding pq``, BT.2100 PQ code values (0..1 =
0..10,000 nits, decoded to that scale). Every pair is measured with
:func:`comfyui_hdr.hdr.metrics.hdr_metrics` (the clip metrics only for clips), then
``metrics.csv`` (one row per pair and an ``overall`` row of means) and ``metrics.png`` are
written atomically to ``--out``, never over existing files unless ``--overwrite``, and a
table is printed, the LumaFlux poster's columns first: PSNR of BT.2100 PQ code values of
BT.2020 light (0..10,000 nits), mean Delta E ITP (ITU-R BT.2124), PU21-PSNR and PU21-SSIM
(Mantiuk & Azimi 2021) and the HDR peak (max luminance, nits) of prediction and truth.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..hdr.atomic import atomic_path
from ..hdr.exr import read_exr
from ..hdr.metrics import GAMUTS, hdr_metrics
from ..hdr.transfer import pq_decode

__all__ = ["ENCODINGS", "TABLE", "evaluate_folders", "format_table", "main", "write_csv",
           "write_plot"]

PLOTTED = (("pu21_psnr", "PU21-PSNR (dB)"), ("pu21_ssim", "PU21-SSIM"),
           ("delta_e_itp", "mean Delta E ITP"), ("pq_psnr", "PQ-PSNR (dB)"))
TABLE = ("pq_psnr", "delta_e_itp", "pu21_psnr", "pu21_ssim", "peak_nits_test",
         "peak_nits_reference", "f2f_psnr_test", "f2f_psnr_reference")
"""The printed columns: the LumaFlux poster's (PSNR in PQ, Delta E ITP, PU21, HDR peak)
first, then frame-to-frame PSNR for clips."""
ENCODINGS = ("linear", "pq")


def _entries(folder: Path, argument: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{argument} {folder} is not a folder")
    entries: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        is_clip = path.is_dir() and any(p.suffix.lower() == ".exr" for p in path.iterdir())
        if not is_clip and path.suffix.lower() not in (".exr", ".npy"):
            continue
        name = path.name if is_clip else path.stem
        if name in entries:
            raise ValueError(f"{argument} holds both {entries[name].name} and {path.name}; "
                             "keep one file per name")
        entries[name] = path
    return entries


def _load(path: Path, encoding: str, nits_at_1: float) -> np.ndarray:
    """A file or folder as float64 linear ``[T, H, W, 3]`` (1.0 at ``nits_at_1``)."""
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if p.suffix.lower() == ".exr")
        pixels = np.stack([read_exr(frame).pixels[..., :3] for frame in frames])
    elif path.suffix.lower() == ".exr":
        pixels = read_exr(path).pixels[None, ..., :3]
    else:
        pixels = np.load(path, allow_pickle=False)
        pixels = pixels[None] if pixels.ndim == 3 else pixels
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"{path} has shape {pixels.shape}; expected RGB [H, W, 3] or "
                         "[T, H, W, 3]")
    pixels = pixels.astype(np.float64)
    if encoding == "linear":
        return pixels
    if not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
        raise ValueError(f"{path} holds values outside [0, 1] or NaN, so it is not PQ code "
                         "values; drop --encoding pq for linear light")
    return pq_decode(pixels, nits_at_1=nits_at_1)


def evaluate_folders(pred: str | Path, gt: str | Path, nits_at_1: float = 100.0,
                     jod: bool = False, gamut: str = "rec709",
                     encoding: str = "linear") -> list[dict]:
    """Measure every prediction in ``pred`` against the same-named ground truth in ``gt``.

    Both hold linear ``gamut`` light with 1.0 at ``nits_at_1`` nits (``encoding``
    ``"linear"``) or BT.2100 PQ code values of it (``"pq"``).

    Returns one dict per pair (``name``, ``frames`` and the metrics) and a last ``overall``
    row holding each metric's mean over the pairs (NaNs left out).
    """
    predictions, truths = _entries(Path(pred), "--pred"), _entries(Path(gt), "--gt")
    unmatched = sorted(set(predictions) ^ set(truths))
    if unmatched:
        raise ValueError(f"no counterpart for {', '.join(unmatched)}; --pred and --gt need "
                         "the same names")
    if not predictions:
        raise ValueError(f"--pred {pred} holds no .exr, .npy or EXR-folder entries")
    if encoding not in ENCODINGS:
        raise ValueError(f"--encoding is {encoding!r}; pick one of {', '.join(ENCODINGS)}")
    rows = []
    for name in sorted(predictions):
        test, reference = (_load(entries[name], encoding, nits_at_1)
                           for entries in (predictions, truths))
        if test.shape != reference.shape:
            raise ValueError(f"{name}: prediction {test.shape} and ground truth "
                             f"{reference.shape} differ in shape")
        rows.append({"name": name, "frames": test.shape[0]}
                    | hdr_metrics(test, reference, nits_at_1, jod=jod, gamut=gamut))
    overall: dict = {"name": "overall", "frames": sum(row["frames"] for row in rows)}
    for key in rows[0]:
        if key not in overall:
            values = [row[key] for row in rows if not math.isnan(row[key])]
            overall[key] = float(np.mean(values)) if values else math.nan
    return rows + [overall]


def write_csv(rows: list[dict], path: Path, overwrite: bool = False) -> Path:
    """Write ``rows`` as CSV (header from the first row), atomically."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def write_plot(rows: list[dict], path: Path, overwrite: bool = False) -> Path:
    """Bar charts of the main metrics per pair, the overall mean dashed, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pairs, overall = rows[:-1], rows[-1]
    names = [row["name"] for row in pairs]
    figure = Figure(figsize=(max(6.0, 0.6 * len(names) + 3), 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (key, label) in zip(figure.subplots(2, 2).flat, PLOTTED, strict=True):
        values = [row[key] for row in pairs]
        axes.bar(names, [value if math.isfinite(value) else 0.0 for value in values])
        if math.isfinite(overall[key]):
            axes.axhline(overall[key], linestyle="--", color="black",
                         label=f"mean {overall[key]:.4g}")
            axes.legend(loc="lower right")
        axes.set_title(label)
        axes.tick_params(axis="x", labelrotation=45)
    with atomic_path(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def format_table(rows: list[dict]) -> str:
    """The rows' main metrics as an aligned text table."""
    header = ["name", "frames", *TABLE]
    lines = [[str(row["name"]), str(row["frames"])] + [f"{row[key]:.4g}" for key in TABLE]
             for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths,
                                                                         strict=True))
                     for line in [header, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``evaluate`` CLI; return the exit code (0, or 2 on bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training evaluate",
        description="Measure HDR predictions against ground truth (PQ-PSNR, Delta E ITP, "
                    "PU21-PSNR/SSIM, peak, dynamic range, flicker, frame-to-frame PSNR).")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predictions")
    parser.add_argument("--gt", required=True, type=Path, help="folder of ground truth")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSV and PNG")
    parser.add_argument("--nits-at-1", type=float, default=100.0,
                        help="display luminance of linear 1.0 in cd/m^2 (default 100; 203 "
                             "for LumaFlux outputs, ITU-R BT.2408 reference white)")
    parser.add_argument("--gamut", choices=GAMUTS, default="rec709",
                        help="primaries of both folders (default rec709; rec2020 for "
                             "LumaFlux outputs)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="linear",
                        help="linear light (default) or BT.2100 PQ code values in [0, 1]")
    parser.add_argument("--jod", action="store_true",
                        help="add ColorVideoVDP JOD (needs the cvvdp package; slow)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing metrics.csv / metrics.png")
    arguments = parser.parse_args(argv)
    csv_path, plot_path = arguments.out / "metrics.csv", arguments.out / "metrics.png"
    try:
        if not arguments.overwrite and (csv_path.exists() or plot_path.exists()):
            raise ValueError(f"{csv_path} or {plot_path} exists; pass --overwrite or pick "
                             "another --out")
        rows = evaluate_folders(arguments.pred, arguments.gt, arguments.nits_at_1,
                                arguments.jod, arguments.gamut, arguments.encoding)
        arguments.out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, csv_path, arguments.overwrite)
        write_plot(rows, plot_path, arguments.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    print(f"pq_psnr: BT.2100 PQ code values of BT.2020 light (0-10,000 nits), inputs "
          f"{arguments.gamut} {arguments.encoding} with 1.0 = {arguments.nits_at_1:g} nits")
    print(f"wrote {csv_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
