"""LumaFlux adapters on a frozen diffusers ``FluxTransformer2DModel``, through hooks only.

Nothing in diffusers is edited or subclassed: :meth:`LumaFluxAdapters.attach` registers
PyTorch forward hooks that

- add PGA's gated value LoRA to each attention's value projection (``attn.to_v`` in every
  block, and ``attn.add_v_proj``, the text stream's, in the double-stream blocks);
- apply PCM's FiLM to the LayerNormed hidden states (the first output of ``norm1`` in a
  double-stream block, of ``norm`` in a single-stream block);
- add the coupler to each block's image hidden states at its output;

and :meth:`LumaFluxAdapters.conditioned` supplies what they read (T_phys, T_perc and the
timestep) for the forwards run inside it. Layers are numbered double-stream blocks first,
then single-stream blocks, as the transformer runs them; TLAM gives each its 6 scalars.
Attached at their initial values the adapters change no bit of the model's output.

References
----------
LumaFlux poster (PGA, PCM, TLAM, coupler on a frozen Flux); Black Forest Labs (2024),
FLUX.1 (double- and single-stream blocks); :mod:`.lumaflux_parts` for each part.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .lumaflux_parts import (
    GatedValueLoRA,
    PerceptualFiLM,
    PhysicalPerceptualCoupler,
    TimestepLayerModulation,
    physical_features,
)


@dataclass(frozen=True)
class LumaFluxSwitches:
    """Which adapters run: the poster's ablation rows are combinations of these.

    ``pga``: the value LoRA; ``gates``: PGA's physical gates on it (off: a plain LoRA);
    ``spectral``: the FFT band-energy terms in the gates; ``pcm``: the perceptual FiLM;
    ``coupler``: the block-output coupler."""

    pga: bool = True
    gates: bool = True
    spectral: bool = True
    pcm: bool = True
    coupler: bool = True


@dataclass
class _Conditioning:
    physical: torch.Tensor
    tokens: torch.Tensor | None
    timestep: torch.Tensor


def _blocks(transformer) -> list:
    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    if not blocks:
        raise ValueError("transformer has no Flux blocks; pass a diffusers "
                         "FluxTransformer2DModel")
    return blocks


class LumaFluxAdapters(torch.nn.Module):
    """PGA, PCM, TLAM and the coupler for one Flux transformer's shape.

    Parameters
    ----------
    transformer
        The frozen ``FluxTransformer2DModel`` the adapters are sized for (read, not kept).
    siglip_dim
        Hidden size of the SigLIP encoder (``encoder.config.hidden_size``).
    rank
        Rank of PGA's value LoRA (poster's plain-LoRA baseline: 8).
    switches
        Which adapters run (:class:`LumaFluxSwitches`).
    """

    def __init__(self, transformer, siglip_dim: int, rank: int = 8,
                 switches: LumaFluxSwitches = LumaFluxSwitches()):
        super().__init__()
        blocks = _blocks(transformer)
        self.double_layers = len(transformer.transformer_blocks)
        self.switches = switches
        attention = blocks[0].attn
        dim, heads, head_dim = attention.query_dim, attention.heads, attention.head_dim
        self.tlam = TimestepLayerModulation(len(blocks))

        def lora() -> GatedValueLoRA:
            return GatedValueLoRA(dim, heads, head_dim, rank, switches.spectral,
                                  switches.gates)

        self.value_lora = torch.nn.ModuleList([lora() for _ in blocks])
        self.context_value_lora = torch.nn.ModuleList(
            [lora() for _ in range(self.double_layers)])
        self.film = torch.nn.ModuleList([PerceptualFiLM(dim, siglip_dim) for _ in blocks])
        self.coupler = torch.nn.ModuleList(
            [PhysicalPerceptualCoupler(dim, siglip_dim) for _ in blocks])
        self._handles: list = []
        self._state: _Conditioning | None = None

    @contextlib.contextmanager
    def conditioned(self, sdr: torch.Tensor, timestep: torch.Tensor,
                    siglip_tokens: torch.Tensor | None = None):
        """Run the attached transformer's forwards inside this block for SDR images
        ``sdr`` ``[B, H, W, 3]`` in [0, 1], at ``timestep`` ``[B]`` (Flux's, in [0, 1]),
        with SigLIP tokens ``[B, M, siglip_dim]`` (needed when PCM or the coupler runs).

        The conditioning stays set after the block, until the next one: a backward through
        a gradient-checkpointed transformer re-runs the blocks (and these hooks) after the
        forward has returned, and must see the same conditioning."""
        if (self.switches.pcm or self.switches.coupler) and siglip_tokens is None:
            raise ValueError("siglip_tokens is None but PCM or the coupler is switched on; "
                             "pass lumaflux_parts.siglip_tokens(encoder, sdr), or switch "
                             "pcm and coupler off")
        self._state = _Conditioning(physical_features(sdr), siglip_tokens,
                                    timestep.reshape(-1))
        yield self

    def _current(self, where: str) -> _Conditioning:
        if self._state is None:
            raise ValueError(f"the LumaFlux adapters ran {where} before any "
                             "LumaFluxAdapters.conditioned(...); run the transformer inside "
                             "`with adapters.conditioned(sdr, timestep, tokens):`")
        return self._state

    def scalars(self, layer: int) -> torch.Tensor:
        """TLAM's ``[B, 6]`` for ``layer`` at the current timestep."""
        return self.tlam(self._current(f"layer {layer}").timestep, layer)

    def attach(self, transformer) -> LumaFluxAdapters:
        """Hook the adapters into ``transformer`` (sized as at construction)."""
        if self._handles:
            raise ValueError("these adapters are attached already; call detach() first")
        for layer, block in enumerate(_blocks(transformer)):
            self._hook_block(layer, block)
        return self

    def detach(self) -> None:
        """Remove every hook: the transformer is its frozen self again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook_block(self, layer: int, block) -> None:
        if self.switches.pga:
            self._handles.append(block.attn.to_v.register_forward_hook(
                self._value_hook(layer, self.value_lora[layer])))
            if layer < self.double_layers:
                self._handles.append(block.attn.add_v_proj.register_forward_hook(
                    self._value_hook(layer, self.context_value_lora[layer])))
        if self.switches.pcm:
            norm = block.norm1 if layer < self.double_layers else block.norm
            self._handles.append(norm.register_forward_hook(self._film_hook(layer)))
        if self.switches.coupler:
            self._handles.append(block.register_forward_hook(self._coupler_hook(layer)))

    def _value_hook(self, layer: int, lora: GatedValueLoRA):
        def hook(module, inputs, output):
            state = self._current(f"PGA, layer {layer}")
            return output + lora(inputs[0], state.physical, self.scalars(layer))
        return hook

    def _film_hook(self, layer: int):
        def hook(module, inputs, output):
            state = self._current(f"PCM, layer {layer}")
            normed = self.film[layer](output[0], state.tokens, self.scalars(layer))
            return (normed, *output[1:])
        return hook

    def _coupler_hook(self, layer: int):
        def hook(module, inputs, output):
            state = self._current(f"the coupler, layer {layer}")
            context, hidden = output
            return context, self.coupler[layer](hidden, state.physical, state.tokens,
                                                self.scalars(layer))
        return hook
