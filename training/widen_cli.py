"""``widen``: widen a DiT checkpoint's latent input and prediction for the 32-channel HDR VAE.

    python -m comfyui_hdr.training widen MODEL_DIR WIDENED_DIR [--channels 32] [--mode copy]
    python -m comfyui_hdr.training widen model.safetensors widened.safetensors --family wan

The input is a diffusers transformer directory (``config.json`` + ``*.safetensors``,
sharded or not; Qwen-Image, Flux or Wan, read from ``_class_name``) or a ComfyUI-format
``.safetensors`` diffusion model (``--family qwen_image|flux|wan``). The output has the
same format: a directory whose ``config.json`` states the new ``in_channels`` and
``out_channels`` explicitly, or a ``.safetensors`` file whose shapes ComfyUI's model
detection reads. :mod:`comfyui_hdr.hdr.models.widen` does the widening (``--mode copy``:
the widened model fed ``[z, z]`` equals the original fed ``z``; ``zero``: the old channels'
prediction is exactly the original's whatever the new channels hold).

Only the two projections change, so in a directory only the shards holding them are
loaded; the others are copied. The output appears atomically (written under a hidden name,
then renamed) and never replaces an existing file or folder unless ``--overwrite``.
Pickle checkpoints are refused; bad input exits with code 2 and a message naming the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psutil
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..hdr.atomic import atomic_path
from ..hdr.models.checkpoint_dir import PICKLE_SUFFIXES
from ..hdr.models.widen import COMFY_LAYOUTS, DIFFUSERS_LAYOUTS, MODES, widen_state_dict
from .common import check_safetensors_dir

__all__ = ["build_parser", "main", "widen_diffusers_dir", "widen_safetensors_file"]

MEMORY_FACTOR = 2
"""Bytes of memory per byte of weights loaded: the tensors, then their serialised copy."""


def _check_memory(nbytes: int, what: str) -> None:
    needed, available = MEMORY_FACTOR * nbytes, psutil.virtual_memory().available
    if needed > available:
        raise ValueError(f"widening {what} needs about {needed / 2**30:.1f} GiB of memory "
                         f"({MEMORY_FACTOR}x its {nbytes / 2**30:.1f} GiB of weights) but "
                         f"{available / 2**30:.1f} GiB is available; free memory or, for a "
                         "diffusers folder, re-save it in smaller shards")


def _metadata(path: Path) -> dict[str, str] | None:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _weight_sets(directory: Path) -> list[tuple[Path | None, dict[str, str]]]:
    """Each sharded index (with its ``key -> shard`` map) and each standalone file."""
    sets, indexed = [], set()
    for index in sorted(directory.glob("*.safetensors.index*.json")):
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        sets.append((index, weight_map))
        indexed |= set(weight_map.values())
    for path in sorted(directory.glob("*.safetensors")):
        if path.name not in indexed:
            sets.append((None, dict.fromkeys(_keys(path), path.name)))
    return sets


def _projection_names(class_name: str) -> tuple[str, dict[str, str]]:
    """The family and the diffusers -> ComfyUI names of the two projections."""
    if class_name not in DIFFUSERS_LAYOUTS:
        raise ValueError(f"the model is a {class_name}; widen supports "
                         + ", ".join(DIFFUSERS_LAYOUTS))
    source = DIFFUSERS_LAYOUTS[class_name]
    target = COMFY_LAYOUTS[source.family]
    return source.family, {source.input: target.input, source.output: target.output}


def _rename(tensors: dict, names: dict[str, str]) -> dict:
    """Rename the top-level ``<name>.weight`` / ``<name>.bias`` keys in ``names``."""
    renamed = {}
    for key, tensor in tensors.items():
        stem, dot, parameter = key.rpartition(".")  # Wan's scale_shift_table has no dot
        renamed[f"{names.get(stem, stem)}.{parameter}" if dot else key] = tensor
    return renamed


def _widen_set(directory: Path, destination: Path, index: Path | None, weight_map: dict,
               family: str, names: dict[str, str], channels: int, mode: str) -> set[str]:
    """Widen one set of shards into ``destination``; returns the shard files written."""
    projections = {f"{name}.{parameter}" for name in names for parameter in ("weight", "bias")}
    touched = sorted({weight_map[key] for key in projections if key in weight_map})
    _check_memory(sum((directory / shard).stat().st_size for shard in touched),
                  f"{', '.join(touched)} in {directory}")
    merged = {}
    for shard in touched:
        merged |= load_file(str(directory / shard))
    widened = _rename(widen_state_dict(_rename(merged, names), family, channels, mode),
                      {comfy: diffusers for diffusers, comfy in names.items()})
    for shard in touched:
        tensors = {key: widened[key] for key in merged if weight_map[key] == shard}
        save_file(tensors, str(destination / shard), metadata=_metadata(directory / shard))
    if index is not None:
        payload = json.loads(index.read_text(encoding="utf-8"))
        growth = sum(widened[key].nbytes - merged[key].nbytes for key in merged)
        if "total_size" in payload.get("metadata", {}):
            payload["metadata"]["total_size"] += growth
        (destination / index.name).write_text(json.dumps(payload, indent=2) + "\n",
                                              encoding="utf-8")
    return set(touched) | ({index.name} if index is not None else set())


def _check_destination(source: Path, destination: Path, overwrite: bool) -> None:
    if destination.resolve() == source.resolve():
        raise ValueError(f"OUTPUT {destination} is the input; write the widened model to a "
                         "new path")
    if destination.exists() and not overwrite:
        raise FileExistsError(f"OUTPUT {destination} already exists; pick another path or "
                              "pass --overwrite")


def widen_diffusers_dir(source: str | os.PathLike, destination: str | os.PathLike,
                        channels: int = 32, mode: str = "copy", overwrite: bool = False,
                        family: str | None = None) -> str:
    """Widen a diffusers Qwen-Image / Flux / Wan transformer folder into ``destination``.

    Returns the model's family (read from ``config.json``; ``family``, if given, must
    agree). ``config.json`` gets explicit ``in_channels`` and
    ``out_channels`` (a Flux config without ``out_channels`` fails to reload); shards that
    hold neither projection, and every other file, are copied unchanged.
    """
    source, destination = Path(source), Path(destination)
    config = check_safetensors_dir(source, "INPUT")
    found, names = _projection_names(str(config.get("_class_name")))
    if family not in (None, found):
        raise ValueError(f"--family {family} contradicts {source}/config.json, which holds a "
                         f"{found} model; drop --family")
    family = found
    _check_destination(source, destination, overwrite)
    layout = DIFFUSERS_LAYOUTS[config["_class_name"]]
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial",
                                    dir=destination.parent))
    try:
        written = {"config.json"}
        for index, weight_map in _weight_sets(source):
            written |= _widen_set(source, partial, index, weight_map, family, names,
                                  channels, mode)
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in written:
                shutil.copy2(path, partial / path.name)
        config |= {"in_channels": channels * layout.config_in,
                   "out_channels": channels * layout.config_out}
        (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n",
                                             encoding="utf-8")
        if destination.exists():
            retired = partial.with_name(f"{partial.name}.old")
            destination.rename(retired)
            partial.rename(destination)
            if retired.is_dir():
                shutil.rmtree(retired)
            else:
                retired.unlink()
        else:
            partial.rename(destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return family


def widen_safetensors_file(source: str | os.PathLike, destination: str | os.PathLike,
                           family: str, channels: int = 32, mode: str = "copy",
                           overwrite: bool = False) -> None:
    """Widen a ComfyUI-format diffusion model ``.safetensors`` (keys may carry a prefix)."""
    source, destination = Path(source), Path(destination)
    if source.suffix in PICKLE_SUFFIXES:
        raise ValueError(f"INPUT {source} is a pickle checkpoint; only safetensors are read "
                         "(pickles can run code): convert it to .safetensors first")
    if not source.is_file() or source.suffix != ".safetensors":
        raise ValueError(f"INPUT {source} is neither a .safetensors file nor a diffusers "
                         "folder (config.json + *.safetensors)")
    if family is None:
        raise ValueError(f"INPUT {source} is a single safetensors file: pass --family "
                         f"({', '.join(COMFY_LAYOUTS)})")
    if destination.suffix != ".safetensors":
        raise ValueError(f"OUTPUT {destination} must end in .safetensors, like the input")
    _check_destination(source, destination, overwrite)
    _check_memory(source.stat().st_size, str(source))
    widened = widen_state_dict(load_file(str(source)), family, channels, mode)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination, overwrite=overwrite) as temporary:
        save_file(widened, str(temporary), metadata=_metadata(source))


def build_parser() -> argparse.ArgumentParser:
    """The ``widen`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training widen",
        description="Widen a DiT's latent input projection and output projection (Qwen-Image, "
                    "Flux, Wan) to more latent channels, e.g. 16 -> 32 for the HDR VAE.")
    parser.add_argument("input", type=Path, metavar="INPUT",
                        help="diffusers transformer folder or ComfyUI-format .safetensors")
    parser.add_argument("output", type=Path, metavar="OUTPUT",
                        help="new folder (for a folder input) or .safetensors file")
    parser.add_argument("--family", choices=list(COMFY_LAYOUTS),
                        help="model family of a .safetensors input (a folder's config says it)")
    parser.add_argument("--channels", type=int, default=32,
                        help="latent channels after widening (default 32)")
    parser.add_argument("--mode", choices=MODES, default="copy",
                        help="copy: [z, z] reproduces the original; zero: new channels start "
                             "at zero (default copy)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``widen`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    try:
        if not arguments.input.exists():
            raise ValueError(f"INPUT {arguments.input} does not exist; give a diffusers "
                             "transformer folder or a .safetensors file")
        if arguments.input.is_dir():
            family = widen_diffusers_dir(arguments.input, arguments.output,
                                         arguments.channels, arguments.mode,
                                         arguments.overwrite, arguments.family)
        else:
            widen_safetensors_file(arguments.input, arguments.output, arguments.family,
                                   arguments.channels, arguments.mode, arguments.overwrite)
            family = arguments.family
    except (ValueError, FileExistsError) as error:
        print(f"widen: error: {error}", file=sys.stderr)
        return 2
    print(f"widened the {family} model to {arguments.channels} latent channels "
          f"({arguments.mode} mode): {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
