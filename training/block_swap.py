"""``--blocks-to-swap N``: keep the frozen weights of the last N transformer blocks off the
device, musubi-tuner's block swapping for cards smaller than the model.

Each swapped block's frozen parameters and floating-point buffers live in a CPU copy
(pinned on CUDA, so copies run asynchronously); on the device they hold a one-value NaN
placeholder (on the CPU when training on a GPU, so a stray use fails loudly). Module hooks
copy a block in just before its forward and release it right after. In backward, the
gradient reaching a block's output copies it in again before its recomputation (gradient
checkpointing) and backward run, and releases the blocks whose backward has finished
(those after it: backward visits blocks in reverse). LoRA parameters never move: they
train on the device. Frozen weights are never copied back, since they never change.

Gradient checkpointing is required: without it, autograd keeps views of each block's
weights for backward and swapping would free nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["BlockSwap", "check_blocks_to_swap"]


def check_blocks_to_swap(count: int, blocks: int, gradient_checkpointing: bool) -> None:
    """A ValueError naming ``--blocks-to-swap`` and the fix for a count the model or the
    other options cannot take (``blocks``: how many transformer blocks the model has)."""
    if count < 0:
        raise ValueError(f"--blocks-to-swap must be 0 or more, got {count}")
    if count >= blocks and count:
        raise ValueError(f"--blocks-to-swap {count}: the model has {blocks} transformer "
                         f"blocks and at least one must stay on the device; use at most "
                         f"{blocks - 1}")
    if count and not gradient_checkpointing:
        raise ValueError("--blocks-to-swap frees a block's weights only when its activations "
                         "are recomputed: drop --no-gradient-checkpointing")


class BlockSwap:
    """Swap the frozen weights of ``blocks`` between the CPU and ``device``.

    Call :meth:`offload` once (the blocks' frozen tensors move to the CPU copies; the
    caller moves everything else to the device), and :meth:`release_all` after each
    ``backward`` (the first swapped block is still on the device then).
    """

    def __init__(self, blocks: Sequence[torch.nn.Module], device: torch.device):
        self.blocks = list(blocks)
        self.device = torch.device(device)
        self.loaded: set[int] = set()
        self.in_backward: set[int] = set()
        self.tensors: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = []
        self.handles = []
        self.copies = 0

    def swapped_tensors(self) -> set[int]:
        """``id()`` of every tensor this swap manages (the caller leaves them where they are)."""
        return {id(tensor) for entries in self.tensors for tensor, _, _ in entries}

    def offload(self) -> None:
        """Move each block's frozen tensors to CPU copies and install the hooks."""
        pin = self.device.type == "cuda"
        for index, block in enumerate(self.blocks):
            entries = []
            for tensor in [*block.parameters(), *block.buffers()]:
                if tensor.requires_grad or not tensor.is_floating_point():
                    continue
                master = tensor.data.to("cpu")
                master = master.pin_memory() if pin else master
                placeholder = torch.full((1,), float("nan"), dtype=master.dtype,
                                         device="cpu").expand(master.shape)
                tensor.data = placeholder
                entries.append((tensor, master, placeholder))
            self.tensors.append(entries)
            self.handles += [
                block.register_forward_pre_hook(lambda _, __, i=index: self._load(i)),
                block.register_forward_hook(lambda _, __, output, i=index: self._after(i, output))]

    def remove(self) -> None:
        """Load every block back onto the device and remove the hooks."""
        for handle in self.handles:
            handle.remove()
        for index in range(len(self.blocks)):
            self._load(index)
        self.handles, self.tensors, self.loaded, self.in_backward = [], [], set(), set()

    def _load(self, index: int) -> None:
        if index in self.loaded:
            return
        for tensor, master, _ in self.tensors[index]:
            tensor.data = master.to(self.device, non_blocking=True)
        self.loaded.add(index)
        self.copies += 1

    def _release(self, index: int) -> None:
        for tensor, _, placeholder in self.tensors[index]:
            tensor.data = placeholder
        self.loaded.discard(index)
        self.in_backward.discard(index)

    def _after(self, index: int, output) -> None:
        if index in self.in_backward:  # the recomputation inside backward: keep it loaded
            return
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        if torch.is_grad_enabled():
            for tensor in outputs:
                if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                    tensor.register_hook(lambda grad, i=index: self._enter_backward(i))
        self._release(index)

    def _enter_backward(self, index: int) -> None:
        for finished in [other for other in self.in_backward if other != index]:
            self._release(finished)
        self._load(index)
        self.in_backward.add(index)

    def release_all(self) -> None:
        """Release every loaded block (after a backward)."""
        for index in list(self.loaded):
            self._release(index)
