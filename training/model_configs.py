"""Real-size transformer configs of the models ``train-lora`` trains, with the step shapes
the memory benchmark (``tests/bench/bench_train_memory.py``) trains them at.

Each ``config`` is the published diffusers ``transformer/config.json`` of the model's
Hugging Face repository (private ``_`` entries and defaults left out):

- ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` and ``Wan-AI/Wan2.1-T2V-14B-Diffusers``:
  ``WanTransformer3DModel`` (the 14B differs in width 40 x 128, FFN 13824 and 40 layers);
- ``Qwen/Qwen-Image``: ``QwenImageTransformer2DModel``, 60 layers of 24 x 128;
- ``black-forest-labs/FLUX.1-dev``: ``FluxTransformer2DModel``, 19 double and 38 single
  blocks of 24 x 128, guidance-distilled.

Text lengths: Wan's and Flux's pipelines pad T5/UMT5 prompts to 512 tokens; Qwen-Image's
keeps a prompt's own tokens (256 here, a long caption's length).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REAL_MODELS", "RealModel"]


@dataclass(frozen=True)
class RealModel:
    """A real-size model and the shape of one benchmark step (batch 1).

    ``frames``: video frames (Wan: 1 + 4k, packed into 1 + k latent frames); ``height``,
    ``width``: pixels (8x VAEs, so latents are ``height/8 x width/8``); ``text_tokens`` and
    ``text_width``: the prompt embedding; ``pooled_width``: Flux's CLIP vector (0: none).
    """

    name: str
    family: str
    class_name: str
    config: dict
    frames: int
    height: int
    width: int
    text_tokens: int
    text_width: int
    pooled_width: int = 0

    def latent_shape(self) -> tuple[int, ...]:
        """``[1, 16, ...]`` latents of one item, as the family's VAE lays them out."""
        height, width = self.height // 8, self.width // 8
        if self.family == "flux":
            return (1, 16, height, width)
        return (1, 16, 1 + (self.frames - 1) // 4, height, width)


_WAN_13B = {"added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True,
            "eps": 1e-06, "ffn_dim": 8960, "freq_dim": 256, "image_dim": None,
            "in_channels": 16, "num_attention_heads": 12, "num_layers": 30,
            "out_channels": 16, "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 1024, "text_dim": 4096}

REAL_MODELS = {
    "wan-1.3b": RealModel("Wan 2.1 T2V 1.3B", "wan", "WanTransformer3DModel", _WAN_13B,
                          frames=17, height=480, width=832, text_tokens=512, text_width=4096),
    "wan-14b": RealModel("Wan 2.1 T2V 14B", "wan", "WanTransformer3DModel",
                         _WAN_13B | {"ffn_dim": 13824, "num_attention_heads": 40,
                                     "num_layers": 40},
                         frames=33, height=480, width=832, text_tokens=512, text_width=4096),
    "qwen-image": RealModel("Qwen-Image 20B", "qwen_image", "QwenImageTransformer2DModel",
                            {"attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
                             "guidance_embeds": False, "in_channels": 64,
                             "joint_attention_dim": 3584, "num_attention_heads": 24,
                             "num_layers": 60, "out_channels": 16, "patch_size": 2},
                            frames=1, height=1024, width=1024, text_tokens=256,
                            text_width=3584),
    "flux": RealModel("FLUX.1-dev 12B", "flux", "FluxTransformer2DModel",
                      {"attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
                       "guidance_embeds": True, "in_channels": 64,
                       "joint_attention_dim": 4096, "num_attention_heads": 24,
                       "num_layers": 19, "num_single_layers": 38, "patch_size": 1,
                       "pooled_projection_dim": 768},
                      frames=1, height=1024, width=1024, text_tokens=512, text_width=4096,
                      pooled_width=768),
}
"""The benchmark's ``--config`` names."""
