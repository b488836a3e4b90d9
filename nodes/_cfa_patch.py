"""Install CFA exposure routing into a ComfyUI model: the engine of the "CFA Patch" node.

:func:`apply_cfa_patch` returns a clone of the model whose text attention sends the
"over" prompt only to the blown-out regions and the "under" prompt only to the crushed
shadows (``hdr.models.cfa``). Everything goes through ComfyUI 0.3.75's ``ModelPatcher``
(object patches and a wrapper, no edits to ComfyUI's classes), so the patch lives on
the clone, stacks with LoRA weight patches and other model patches, runs under every
sampler and scheduler, and is undone when another clone of the model is loaded.

Wan 2.1/2.2 text-to-video, VACE included (cross-attention, DiffHDR's own setting):

- an object patch ``diffusion_model.<path>.forward`` on every ``WanT2VCrossAttention``
  (``blocks.N.cross_attn``, ``vace_blocks.N.cross_attn``). It calls the module's previous
  forward (ComfyUI's, or an earlier object patch) with the base context, and, when the
  call carries routing state, again with the over and under contexts, then blends the
  three outputs with ``cfa_combine``. The module's own forward does the attention, so
  attention backends and ``optimized_attention_override`` still apply.
- a ``WrappersMP.DIFFUSION_MODEL`` wrapper (key :data:`CFA_KEY`) that, for each model
  call, resamples the masks to the call's token grid ``(T, h/2, w/2)``, embeds the over
  and under prompts with the model's own ``text_embedding``, and hands them to the
  blocks in ``transformer_options[CFA_KEY]``.
- with in-context conditioning (a reference clip concatenated in time, as "HDR Reference
  (in-context)" and train-lora's reference mode give Wan; 0.33's ``context_latents``; a
  Wan Fun ``reference_latent``), the reference's tokens take the base prompt and only the
  target's tokens are routed: the region prompts describe the target's exposure.

Flux.1 (joint attention): image tokens attend to ``[text tokens, image tokens]`` in one
attention, and every block updates the text tokens, so "the over prompt's context" is the
text stream the over prompt would have had. The DIFFUSION_MODEL wrapper runs the model on
``1 + branches`` stacked copies of the batch: copy 0 carries the base prompt's text
tokens, the next ones the over and under prompts' (same token count needed; Flux's T5
pads prompts to 256 tokens); latent, timestep, pooled vector and guidance are the base
ones in every copy. An ``optimized_attention_override`` (chained to any override already
set) lets each joint attention, double and single blocks alike, run normally for all
copies, then replaces the image-token rows of its output, in every copy, with the CFA
blend of the copies' image rows; text-token rows keep their own copy's result. The image
stream thus stays a single stream that saw the over prompt's text under the over mask,
and each text stream evolves as in its own prompt's run. Only the text-token sequence is
routed: the pooled vector and guidance come from the base prompt. Cost: ``1 + branches``
times the model.

Batches: routing applies to the positive (cond) rows; negative rows keep the negative
prompt. ComfyUI modules are imported inside functions only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..hdr.masks import ExposureMasks
from ..hdr.models.cfa import cfa_combine, check_alpha, masks_to_token_grid

CFA_KEY = "comfyui_hdr_cfa"
"""Wrapper key and ``transformer_options`` key of the routing."""

SUPPORTED_MODELS = ("Wan 2.1/2.2 text-to-video (VACE included)", "Flux.1 (dev, schnell)")

WAN_TEMPORAL_COMPRESSION = 4
"""Wan VAE: 4n + 1 frames encode to n + 1 latent frames."""


@dataclass(frozen=True)
class _Branch:
    """One routed prompt: its text tokens, pixel masks and strength."""

    name: str
    tokens: torch.Tensor
    masks: torch.Tensor
    alpha: float


@dataclass(frozen=True)
class _Routing:
    """The patch's fixed inputs; :meth:`weighted` fits them to each model call."""

    branches: tuple[_Branch, ...]
    spatial_compression: int

    def weighted(self, latent_shape, patch_size, transformer_options) -> list[tuple]:
        """``(branch, token weights [rows, tokens])`` of branches acting on this call."""
        rows = latent_shape[0]
        chunks = transformer_options.get("cond_or_uncond") or [0]
        per_chunk = rows // len(chunks)
        positive = torch.tensor([float(chunk == 0) for chunk in chunks]).repeat_interleave(
            per_chunk)
        active = []
        for branch in self.branches:
            grid = masks_to_token_grid(branch.masks, latent_shape, patch_size,
                                       WAN_TEMPORAL_COMPRESSION,
                                       self.spatial_compression).flatten(1)
            if grid.shape[0] == per_chunk:
                grid = grid.repeat(len(chunks), 1)
            elif grid.shape[0] == 1:
                grid = grid.expand(rows, -1)
            else:
                raise ValueError(f"the {branch.name} masks hold {grid.shape[0]} images but "
                                 f"each prompt's batch has {per_chunk} latents; give one mask "
                                 "per latent, or one for all")
            weights = grid * positive[:, None].to(grid)
            if bool(weights.any()):
                active.append((branch, weights))
        return active


@dataclass(frozen=True)
class _CrossAttentionRoute:
    """State the Wan cross-attention patches read: embedded contexts, the target's token
    weights, and how many tokens precede the target's in the sequence (a Wan Fun reference
    image's, which ComfyUI prepends); tokens after them (a reference clip concatenated in
    time, 0.33's in-context latents) follow the target's."""

    contexts: dict
    weights: dict
    alphas: dict
    leading: int = 0

    def blend(self, base: torch.Tensor, outputs: dict) -> torch.Tensor:
        tokens = next(iter(self.weights.values())).shape[1]
        trailing = base.shape[1] - tokens - self.leading
        if trailing < 0:
            raise ValueError(f"CFA: the cross-attention sees {base.shape[1]} tokens but the "
                             f"masks cover {tokens} target tokens after {self.leading} "
                             "reference tokens; the masks must be made for this latent")
        # Reference tokens keep the base prompt: the region prompts describe the target.
        weights = {name: F.pad(value, (self.leading, trailing))
                   for name, value in self.weights.items()}
        return cfa_combine(base, outputs.get("over"), outputs.get("under"),
                           weights.get("over"), weights.get("under"),
                           self.alphas.get("over", 0.0), self.alphas.get("under", 0.0))


def _routed_cross_attention(previous, x, context, transformer_options=None, **kwargs):
    """Object-patched ``WanT2VCrossAttention.forward``: base, over and under, blended."""
    options = {} if transformer_options is None else transformer_options
    base = previous(x, context, transformer_options=options, **kwargs)
    route = options.get(CFA_KEY)
    if not isinstance(route, _CrossAttentionRoute):
        return base
    outputs = {name: previous(x, routed, transformer_options=options, **kwargs)
               for name, routed in route.contexts.items()}
    return route.blend(base, outputs)


def _wan_wrapper(routing: _Routing, executor, x, timestep, context, clip_fea=None,
                 time_dim_concat=None, transformer_options=None, **kwargs):
    """DIFFUSION_MODEL wrapper of ``WanModel``: prepares the per-call routing state."""
    options = {} if transformer_options is None else transformer_options
    model = executor.class_obj
    active = routing.weighted(tuple(x.shape), model.patch_size, options)
    if not active:
        return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options,
                        **kwargs)
    rows = x.shape[0]
    contexts, weights, alphas = {}, {}, {}
    for branch, branch_weights in active:
        tokens = branch.tokens.to(device=context.device, dtype=context.dtype)
        contexts[branch.name] = model.text_embedding(tokens).expand(rows, -1, -1)
        weights[branch.name] = branch_weights.to(x.device)
        alphas[branch.name] = branch.alpha
    reference = kwargs.get("reference_latent")
    leading = 0
    if reference is not None and getattr(model, "ref_conv", None) is not None:
        # WanModel.forward_orig: ref_conv (stride = the spatial patch) tokens go first.
        leading = (reference.shape[-2] // model.patch_size[1]) * (
            reference.shape[-1] // model.patch_size[2])
    options = {**options, CFA_KEY: _CrossAttentionRoute(contexts, weights, alphas, leading)}
    return executor(x, timestep, context, clip_fea, time_dim_concat, options, **kwargs)


@dataclass(frozen=True)
class _JointRoute:
    """How the stacked copies of a Flux batch blend in each joint attention."""

    copies: int
    rows: int
    text_tokens: int
    names: tuple[str, ...]
    weights: tuple[torch.Tensor, ...]
    alphas: tuple[float, ...]

    def blend(self, attention: torch.Tensor) -> torch.Tensor:
        if attention.ndim != 3 or attention.shape[0] != self.copies * self.rows:
            raise ValueError(f"CFA: unexpected joint-attention output {tuple(attention.shape)} "
                             f"for {self.copies} copies of {self.rows} rows")
        stacked = attention.unflatten(0, (self.copies, self.rows))
        text, image = stacked[:, :, :self.text_tokens], stacked[:, :, self.text_tokens:]
        outputs, masks = {}, {}
        for index, (name, weights) in enumerate(zip(self.names, self.weights, strict=True)):
            outputs[name] = image[index + 1]
            extra = image.shape[2] - weights.shape[1]
            masks[name] = torch.nn.functional.pad(weights, (0, extra))
        alphas = dict(zip(self.names, self.alphas, strict=True))
        blended = cfa_combine(image[0], outputs.get("over"), outputs.get("under"),
                              masks.get("over"), masks.get("under"),
                              alphas.get("over", 0.0), alphas.get("under", 0.0))
        image = blended.unsqueeze(0).expand(self.copies, -1, -1, -1)
        return torch.cat([text, image], dim=2).flatten(0, 1)


def _routed_joint_attention(route: _JointRoute, previous, func, *args, **kwargs):
    """``optimized_attention_override``: attention as usual, then the CFA blend."""
    if previous is not None:
        attention = previous(func, *args, **kwargs)
    else:
        attention = func(*args, **kwargs)
    return route.blend(attention)


def _stack(value, copies: int, rows: int):
    """Repeat batch-sized tensors (also inside lists and dicts) ``copies`` times."""
    if isinstance(value, torch.Tensor):
        if value.ndim > 0 and value.shape[0] == rows:
            return value.repeat(copies, *([1] * (value.ndim - 1)))
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_stack(item, copies, rows) for item in value)
    if isinstance(value, dict):
        return {key: _stack(item, copies, rows) for key, item in value.items()}
    return value


def _flux_wrapper(routing: _Routing, executor, x, timestep, context, y=None, guidance=None,
                  ref_latents=None, control=None, transformer_options=None, **kwargs):
    """DIFFUSION_MODEL wrapper of ``Flux``: stacks one copy of the batch per prompt."""
    options = {} if transformer_options is None else transformer_options
    model = executor.class_obj
    active = routing.weighted(tuple(x.shape), model.patch_size, options)
    if not active:
        return executor(x, timestep, context, y, guidance, ref_latents, control,
                        transformer_options, **kwargs)
    if kwargs.get("attention_mask") is not None:
        raise ValueError("CFA Patch on Flux: the conditioning carries an attention_mask, "
                         "which the routed prompts do not share; remove the mask")
    rows = x.shape[0]
    streams = [context]
    for branch, _ in active:
        tokens = branch.tokens.to(device=context.device, dtype=context.dtype)
        if tokens.shape[1] != context.shape[1]:
            raise ValueError(f"CFA Patch on Flux: the {branch.name} prompt has "
                             f"{tokens.shape[1]} text tokens and the base prompt "
                             f"{context.shape[1]}; joint attention routes equal-length "
                             "prompts (keep each under 256 T5 tokens)")
        streams.append(tokens.expand(rows, -1, -1))
    copies = len(streams)
    route = _JointRoute(copies, rows, context.shape[1],
                        tuple(branch.name for branch, _ in active),
                        tuple(weights.to(x.device) for _, weights in active),
                        tuple(branch.alpha for branch, _ in active))
    previous = options.get("optimized_attention_override")
    options = {**options, "optimized_attention_override":
               functools.partial(_routed_joint_attention, route, previous)}
    output = executor(_stack(x, copies, rows), _stack(timestep, copies, rows),
                      torch.cat(streams), _stack(y, copies, rows),
                      _stack(guidance, copies, rows), _stack(ref_latents, copies, rows),
                      _stack(control, copies, rows), options, **_stack(kwargs, copies, rows))
    return output[:rows]


def _prompt_tokens(conditioning, name: str, width: int) -> torch.Tensor | None:
    """The text tokens ``[1, tokens, width]`` of a one-prompt CONDITIONING, or None."""
    if conditioning is None or len(conditioning) == 0:
        return None
    if len(conditioning) != 1:
        raise ValueError(f"{name} holds {len(conditioning)} conditionings; CFA routes one "
                         "prompt per region: use one text encode (Conditioning Concat joins "
                         "prompts)")
    tokens = conditioning[0][0]
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[0] != 1:
        raise ValueError(f"{name} must be a CONDITIONING whose tensor is [1, tokens, width], "
                         f"got {getattr(tokens, 'shape', type(tokens).__name__)}")
    if tokens.shape[-1] != width:
        raise ValueError(f"{name} has {tokens.shape[-1]}-wide text tokens but this model "
                         f"reads {width}; encode the prompt with the model's text encoder")
    return tokens


def _unsupported(model_patcher) -> ValueError:
    model = model_patcher.model
    return ValueError(f"CFA Patch supports {' and '.join(SUPPORTED_MODELS)}; got "
                      f"{type(model).__name__} ({type(model.diffusion_model).__name__})")


def _wan_cross_attention_paths(diffusion_model) -> list[str]:
    from comfy.ldm.wan.model import WanT2VCrossAttention

    return [path for path, module in diffusion_model.named_modules()
            if type(module) is WanT2VCrossAttention]


def apply_cfa_patch(model_patcher, over_cond, under_cond, masks: ExposureMasks,
                    alpha_over: float, alpha_under: float):
    """Return a clone of ``model_patcher`` with CFA exposure routing installed.

    Parameters
    ----------
    model_patcher
        A ComfyUI MODEL (``comfy.model_patcher.ModelPatcher``) of a supported family
        (:data:`SUPPORTED_MODELS`).
    over_cond, under_cond
        One-prompt CONDITIONINGs (``[[tokens [1, n, width], {...}]]``) for the blown-out
        and the crushed regions; ``None`` or empty turns that branch off.
    masks
        Exposure masks of the clip (Wan: the frames the latent encodes) or of each image
        of the batch (Flux); resampled to the token grid at every model call.
    alpha_over, alpha_under
        Region strengths in [0, 2]: 0 off, 1 the region's prompt replaces the base one.

    Returns
    -------
    A clone; the input model is untouched. With every branch off (no prompt, strength 0
    or an empty mask) the clone carries no CFA patch and samples exactly like the input.
    Applying the patch to an already CFA-patched model replaces the earlier routing.

    Raises
    ------
    ValueError
        Unsupported model family (the message lists the supported ones), strength out of
        range, a conditioning of the wrong width or with several prompts, masks that do
        not fit the latent (raised at sampling, naming both shapes).
    """
    import comfy.latent_formats
    import comfy.patcher_extension
    from comfy.ldm.flux.model import Flux
    from comfy.ldm.wan.model import VaceWanModel, WanModel

    alpha_over = check_alpha(alpha_over, "alpha_over")
    alpha_under = check_alpha(alpha_under, "alpha_under")
    if not isinstance(masks, ExposureMasks):
        raise ValueError(f"masks must be EXPOSURE_MASKS, got {type(masks).__name__}; connect "
                         "the Exposure Masks node")
    diffusion_model = model_patcher.model.diffusion_model
    if type(diffusion_model) in (WanModel, VaceWanModel):
        paths = _wan_cross_attention_paths(diffusion_model)
        if not paths:
            raise _unsupported(model_patcher)
        width = diffusion_model.text_dim
        wrapper = _wan_wrapper
        wide_vae = isinstance(model_patcher.model.latent_format, comfy.latent_formats.Wan22)
        spatial_compression = 16 if wide_vae else 8
    elif type(diffusion_model) is Flux:
        paths = []
        width = diffusion_model.params.context_in_dim
        wrapper = _flux_wrapper
        spatial_compression = 8
    else:
        raise _unsupported(model_patcher)

    branches = []
    for name, conditioning, mask, alpha in (("over", over_cond, masks.over, alpha_over),
                                            ("under", under_cond, masks.under, alpha_under)):
        tokens = _prompt_tokens(conditioning, f"{name}_cond", width)
        if tokens is not None and alpha > 0 and bool(mask.any()):
            branches.append(_Branch(name, tokens, mask.float().cpu(), alpha))

    patched = model_patcher.clone()
    diffusion_wrapper = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    patched.remove_wrappers_with_key(diffusion_wrapper, CFA_KEY)
    for path in paths:
        key = f"diffusion_model.{path}.forward"
        previous = patched.get_model_object(key)
        if isinstance(previous, functools.partial) and previous.func is _routed_cross_attention:
            previous = previous.args[0]
        if branches:
            patched.add_object_patch(key, functools.partial(_routed_cross_attention, previous))
        elif key in patched.object_patches:
            patched.add_object_patch(key, previous)
    if branches:
        routing = _Routing(tuple(branches), spatial_compression)
        patched.add_wrapper_with_key(diffusion_wrapper, CFA_KEY,
                                     functools.partial(wrapper, routing))
    return patched
