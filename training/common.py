"""Trainer pieces the training CLIs share: accelerate, step-indexed batches, checkpoints, logs.

- :func:`make_accelerator` sets up ``accelerate`` (one CPU process under ``python -m``, any
  number under ``accelerate launch``) and refuses half precision for fp32-only models.
- :class:`StepBatchSampler` gives every optimizer step its own batch, drawn from
  ``(seed, epoch)`` and split between processes, so a resumed run sees exactly the batches
  an uninterrupted one would, without replaying a data loader.
- :func:`save_checkpoint` / :func:`restore_checkpoint` write and read ``checkpoint-<step>/``:
  the model through ``save_pretrained(safe_serialization=True)``, the optimizer state and
  every process's RNG states as safetensors + JSON, and the trainer's own state as JSON.
  Nothing is pickled, and a checkpoint appears atomically (written under a hidden name,
  then renamed), so a crash never leaves half of one.
- :class:`LossLog` keeps the per-step loss terms and writes ``loss.csv`` and ``loss.png``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..hdr.atomic import atomic_path
from ..hdr.models.checkpoint_dir import check_safetensors_dir

__all__ = [
    "CHECKPOINT_PREFIX",
    "EpochItems",
    "LossLog",
    "StepBatchSampler",
    "check_safetensors_dir",
    "latest_checkpoint",
    "make_accelerator",
    "progress_bar",
    "resolve_resume",
    "restore_checkpoint",
    "save_checkpoint",
    "step_generator",
    "write_json",
]

CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_HALF_PRECISIONS = ("fp16", "bf16", "fp8")


def make_accelerator(mixed_precision: str = "no", *, full_precision_only: str | None = None):
    """An ``accelerate.Accelerator`` for this process (CPU, one GPU or ``accelerate launch``).

    Parameters
    ----------
    mixed_precision
        ``"no"``, ``"fp16"``, ``"bf16"`` or ``"fp8"``; ``accelerate launch
        --mixed_precision`` (the ``ACCELERATE_MIXED_PRECISION`` variable) also sets it.
    full_precision_only
        The model's name if it trains in float32 only: half precision, asked for either
        way, raises ``ValueError`` naming the model.
    """
    from accelerate import Accelerator

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if full_precision_only is not None:
        for source, value in (("--mixed-precision", mixed_precision),
                              ("accelerate launch --mixed_precision", launched)):
            if value in _HALF_PRECISIONS:
                raise ValueError(f"{source} is {value}, but {full_precision_only} trains in "
                                 "float32 (fp32) only: fp16/bf16 band smooth HDR gradients. "
                                 "Use mixed precision 'no'")
    return Accelerator(mixed_precision=mixed_precision if mixed_precision != "no" else launched)


def step_generator(seed: int, step: int, process_index: int,
                   device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by ``(seed, step, process)``: noise that a resume reproduces."""
    entropy = np.random.SeedSequence([seed, step, process_index]).generate_state(2, np.uint32)
    return torch.Generator(device).manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` by optimizer step, for steps ``start_step`` to ``total_steps``.

    Step ``s`` belongs to epoch ``s // steps_per_epoch``; each epoch is a permutation of
    the dataset drawn from ``(seed, epoch)`` and cut into global batches of
    ``batch_size * num_processes`` (a last partial batch is dropped); process ``p`` takes
    the ``p``-th slice. The batch of a step therefore depends on nothing but the step.

    >>> sampler = StepBatchSampler(6, 2, seed=0, start_step=2, total_steps=4)
    >>> list(sampler)  # step 2 ends epoch 0, step 3 starts epoch 1
    [[(0, 0), (0, 1)], [(1, 1), (1, 4)]]
    """

    def __init__(self, length: int, batch_size: int, seed: int, start_step: int,
                 total_steps: int, process_index: int = 0, num_processes: int = 1):
        global_batch = batch_size * num_processes
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if length < global_batch:
            raise ValueError(f"the dataset has {length} items, fewer than one batch of "
                             f"{batch_size} x {num_processes} processes; lower --batch-size "
                             "or add data")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.offset = process_index * batch_size
        self.global_batch = global_batch
        self.steps_per_epoch = length // global_batch

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This process's ``(epoch, index)`` pairs for optimizer step ``step`` (from 0)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        start = position * self.global_batch + self.offset
        return [(epoch, int(index)) for index in order[start:start + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return (self.batch(step) for step in range(self.start_step, self.total_steps))

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


class EpochItems(torch.utils.data.Dataset):
    """Fetch ``dataset[index]`` by ``(epoch, index)``, calling ``set_epoch`` first if it has one.

    Works in DataLoader worker processes, where a ``set_epoch`` called on the main
    process's copy of the dataset would not arrive.
    """

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def progress_bar(accelerator, total: int, initial: int, description: str) -> tqdm:
    """A tqdm bar over optimizer steps, shown by the main process of each machine only."""
    return tqdm(total=total, initial=initial, desc=description, unit="step",
                disable=not accelerator.is_local_main_process, dynamic_ncols=True)


def write_json(path: str | os.PathLike, payload: Any, overwrite: bool = True) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The ``checkpoint-<step>`` directory with the highest step under ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := _CHECKPOINT.match(path.name))]
    return max(found)[1] if found else None


def resolve_resume(resume: str, output: Path) -> Path:
    """``--resume``: ``"latest"`` (the newest checkpoint under ``output``) or a checkpoint path."""
    checkpoint = latest_checkpoint(output) if resume == "latest" else Path(resume)
    if checkpoint is None:
        raise ValueError(f"--resume latest: no {CHECKPOINT_PREFIX}<step> directory in {output}; "
                         "start without --resume")
    if not (checkpoint / "trainer_state.json").is_file():
        raise ValueError(f"--resume {checkpoint} is not a checkpoint (no trainer_state.json); "
                         f"give a {CHECKPOINT_PREFIX}<step> directory or 'latest'")
    match = _CHECKPOINT.match(checkpoint.name)
    later = []
    if match and Path(output).is_dir():
        later = sorted((int(found.group(1)), path.name) for path in Path(output).iterdir()
                       if path.is_dir() and (found := _CHECKPOINT.match(path.name))
                       and int(found.group(1)) > int(match.group(1)))
    if later:
        raise ValueError(f"--resume {checkpoint.name}: {output} already holds later "
                         f"checkpoints ({', '.join(name for _, name in later)}), which the "
                         "resumed run would replace; move them away or resume from latest")
    return checkpoint


def prepare_output(output: Path, resume: str, overwrite: bool, accelerator,
                   run_files: Sequence[str] = ()) -> Path | None:
    """The checkpoint ``--resume`` names (or None) for a run writing into ``output``.

    A new run refuses a non-empty ``output`` unless ``overwrite``; then the old run's
    checkpoints and its ``run_files`` (the trainer's final outputs) are removed first, so
    a new run that fails never leaves the old run's model beside its own checkpoints.
    Every process calls it; the main one creates the folder.
    """
    checkpoint = resolve_resume(resume, output) if resume else None
    if checkpoint is None and output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ValueError(f"--output {output} is not empty; pass --resume latest to continue "
                         "its run, --overwrite to start over, or pick another folder")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        while checkpoint is None and (previous := latest_checkpoint(output)) is not None:
            shutil.rmtree(previous)
        for name in run_files if checkpoint is None else ():
            (output / name).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return checkpoint


def _failed_anywhere(accelerator, failed: bool) -> bool:
    """True on every process if any process says it failed (a collective: all must call)."""
    flag = torch.tensor([1.0 if failed else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, "sum").item() > 0)


_QUANTIZED_STATES = ("torchao.optim.",)
"""Modules whose optimizer-state tensor subclasses checkpoints store by their parts."""


def _quantized_state(value: torch.Tensor) -> bool:
    module = type(value).__module__
    return type(value) is not torch.Tensor and module.startswith(_QUANTIZED_STATES)


def _optimizer_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into safetensors tensors and a JSON remainder.

    Quantized states (torchao's 8-bit moments, tensor subclasses) are stored as their
    inner tensors (``__tensor_flatten__``), their class and attributes in the remainder.
    """
    tensors, scalars = {}, {}
    for parameter, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and _quantized_state(value):
                inner, attributes = value.__tensor_flatten__()
                for part in inner:
                    tensors[f"{parameter}.{name}.{part}"] = (
                        getattr(value, part).detach().cpu().contiguous())
                scalars.setdefault(str(parameter), {})[name] = {"quantized": {
                    "class": f"{type(value).__module__}:{type(value).__qualname__}",
                    "inner": list(inner), "attributes": [
                        str(item).removeprefix("torch.") if isinstance(item, torch.dtype)
                        else item for item in attributes]}}
            elif isinstance(value, torch.Tensor):
                tensors[f"{parameter}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(parameter), {})[name] = value
    groups = [{name: {"tensor": value.item()} if isinstance(value, torch.Tensor) else value
               for name, value in group.items()} for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "state": scalars}


def _rebuild_quantized(tensors: dict[str, torch.Tensor], key: str, spec: dict) -> torch.Tensor:
    import importlib

    module, name = spec["class"].split(":")
    if not module.startswith(_QUANTIZED_STATES):
        raise ValueError(f"optimizer.json names {spec['class']}, not a quantized optimizer "
                         "state this trainer writes; the checkpoint is not one of ours")
    cls = getattr(importlib.import_module(module), name)
    attributes = [getattr(torch, item) if isinstance(item, str) else item
                  for item in spec["attributes"]]
    inner = {part: tensors.pop(f"{key}.{part}") for part in spec["inner"]}
    return cls.__tensor_unflatten__(inner, attributes, None, None)


def _optimizer_state(tensors: dict[str, torch.Tensor], remainder: dict) -> dict:
    tensors = dict(tensors)
    state: dict[int, dict] = {}
    for key, entries in remainder["state"].items():
        state[int(key)] = {name: _rebuild_quantized(tensors, f"{key}.{name}", value["quantized"])
                           if isinstance(value, dict) and "quantized" in value else value
                           for name, value in entries.items()}
    for key, tensor in tensors.items():
        parameter, name = key.split(".", 1)
        state.setdefault(int(parameter), {})[name] = tensor
    groups = [{name: torch.tensor(value["tensor"], dtype=torch.float32)
               if isinstance(value, dict) and "tensor" in value else value
               for name, value in group.items()} for group in remainder["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{index}": state
                    for index, state in enumerate(torch.cuda.get_rng_state_all())}
    name, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), position, has_gauss, gauss],
                     "python": [version, list(python_state), python_gauss]}


def _set_rng_state(tensors: dict[str, torch.Tensor], remainder: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{index}"] for index in range(torch.cuda.device_count())
            if f"cuda.{index}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    name, keys, position, has_gauss, gauss = remainder["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, python_state, python_gauss = remainder["python"]
    random.setstate((version, tuple(python_state), python_gauss))


def save_checkpoint(output: Path, step: int, accelerator, model, optimizer,
                    trainer_state: dict, loss_log: LossLog,
                    finish: Callable[[Path], None] | None = None) -> Path:
    """Write ``output/checkpoint-<step>/`` (call on every process); returns its path.

    Holds ``model/`` (``save_pretrained``, safetensors), ``optimizer.safetensors`` +
    ``optimizer.json``, ``rng-<process>.safetensors`` + ``.json`` for every process,
    ``trainer_state.json`` (``trainer_state`` and ``step``) and the ``loss.csv`` so far;
    ``finish(folder)`` (main process) adds files before the folder takes its name, so a
    checkpoint is complete or absent. An existing ``checkpoint-<step>`` is never replaced.
    """
    final = output / f"{CHECKPOINT_PREFIX}{step}"
    if final.exists():  # every process sees it: all stop here together
        raise FileExistsError(f"{final} already exists; the run will not replace a "
                              "checkpoint (move it away, or resume from it)")
    partial = output / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    tensors, remainder = _rng_state()
    save_file(tensors, str(partial / f"rng-{accelerator.process_index}.safetensors"))
    (partial / f"rng-{accelerator.process_index}.json").write_text(json.dumps(remainder))
    failure = None
    if accelerator.is_main_process:
        try:
            accelerator.unwrap_model(model).save_pretrained(partial / "model",
                                                            safe_serialization=True)
            tensors, remainder = _optimizer_tensors(optimizer.state_dict())
            save_file(tensors, str(partial / "optimizer.safetensors"))
            (partial / "optimizer.json").write_text(json.dumps(remainder))
            (partial / "trainer_state.json").write_text(
                json.dumps(trainer_state | {"step": step}, indent=2))
            loss_log.write_csv(partial / "loss.csv")
            if finish is not None:
                finish(partial)
        except Exception as error:  # shared below, so no process waits at a barrier for it
            failure = error
    if _failed_anywhere(accelerator, failure is not None):
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        if failure is not None:
            raise failure
        raise RuntimeError(f"writing {final.name} failed on the main process")
    if accelerator.is_main_process:
        partial.rename(final)
    accelerator.wait_for_everyone()
    return final


def restore_checkpoint(checkpoint: Path, accelerator, optimizer) -> tuple[dict, LossLog]:
    """Load the optimizer state and this process's RNG states from ``checkpoint``.

    The model is the caller's to load from ``checkpoint / "model"`` (before building the
    optimizer). Returns the trainer state (with ``step``) and the loss log so far.
    """
    optimizer.load_state_dict(_optimizer_state(
        load_file(str(checkpoint / "optimizer.safetensors")),
        json.loads((checkpoint / "optimizer.json").read_text())))
    rng = checkpoint / f"rng-{accelerator.process_index}"
    if not rng.with_suffix(".safetensors").is_file():
        raise ValueError(f"{checkpoint} was written by fewer processes than the "
                         f"{accelerator.num_processes} running now; resume with the same "
                         "number of processes")
    _set_rng_state(load_file(str(rng.with_suffix(".safetensors"))),
                   json.loads(rng.with_suffix(".json").read_text()))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state, LossLog.read_csv(checkpoint / "loss.csv", until=state["step"])


class LossLog:
    """Per-step loss terms: ``append(step, total=..., ...)``, then ``loss.csv`` and ``loss.png``."""

    def __init__(self, rows: Sequence[dict] = ()):
        self.rows = [dict(row) for row in rows]

    def append(self, step: int, **terms: float) -> None:
        """Record the loss terms of optimizer step ``step`` (counted from 1)."""
        self.rows.append({"step": step} | {name: float(value) for name, value in terms.items()})

    @classmethod
    def read_csv(cls, path: Path, until: int | None = None) -> LossLog:
        """Read a ``loss.csv``, keeping steps up to ``until``."""
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [{key: int(value) if key == "step" else float(value)
                     for key, value in row.items()} for row in csv.DictReader(handle)]
        return cls([row for row in rows if until is None or row["step"] <= until])

    def write_csv(self, path: Path) -> Path:
        """Write the rows as CSV (columns: step, then the terms), atomically."""
        with atomic_path(path, overwrite=True) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]) if self.rows
                                        else ["step"])
                writer.writeheader()
                writer.writerows(self.rows)
        return Path(path)

    def write_plot(self, path: Path, title: str) -> Path:
        """Plot each term against the step (log scale, with a moving average) as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        terms = [name for name in self.rows[0] if name != "step"] if self.rows else []
        figure = Figure(figsize=(7.0, 2.2 * max(1, len(terms)) + 0.5), layout="constrained")
        FigureCanvasAgg(figure)
        figure.suptitle(title)
        steps = np.array([row["step"] for row in self.rows])
        window = max(1, len(steps) // 50)
        for index, name in enumerate(terms):
            axes = figure.add_subplot(len(terms), 1, index + 1)
            values = np.array([row[name] for row in self.rows])
            axes.plot(steps, values, linewidth=0.6, alpha=0.4 if window > 1 else 1.0,
                      color="tab:blue")
            if window > 1:
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                axes.plot(steps[window - 1:], smooth, color="tab:blue",
                          label=f"mean of {window}")
                axes.legend(loc="upper right")
            if np.all(values > 0):
                axes.set_yscale("log")
            axes.set_ylabel(name)
            axes.grid(True, alpha=0.3)
        if terms:
            axes.set_xlabel("step")
        with atomic_path(path, overwrite=True) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        return Path(path)
