"""Model code, one module per model; import the module you need (they pull in diffusers).

- :mod:`.hdr_vae`: the dual-head HDR VAE (``HDRAutoencoder``, ``load_hdr_vae``,
  ``vae_loss``), with :mod:`.tiling` (frame-synchronous tiled encode and decode),
  :mod:`.precision` (strict float32: TF32 off) and :mod:`.warm_start` (copying a
  pretrained AutoencoderKL in);
- :mod:`.qwen_hdr_vae`: the same dual-head VAE on Qwen-Image's VAE blocks, warm-started from
  ``AutoencoderKLQwenImage``;
- :mod:`.latent_stats`: the latent's per-channel mean/std and the latent format they define;
- :mod:`.widen`: widening a DiT's latent input and prediction 16 -> 32 channels;
- :mod:`.cfa`: CFA attention maths;
- LumaFlux (SDR -> HDR on a frozen Flux): :mod:`.rqs` (monotone rational-quadratic
  splines), :mod:`.tone_field` (the per-pixel RQS head in BT.2020 Y'CbCr),
  :mod:`.lumaflux_parts` (PGA, PCM, TLAM, coupler, SigLIP), :mod:`.lumaflux` (their hooks
  on a diffusers ``FluxTransformer2DModel``), :mod:`.lumaflux_loss` (the poster's loss)
  and :mod:`.lumaflux_folder` (a trained adapter set saved and loaded as a folder);
- :mod:`.checkpoint_dir`: the model-folder check and a base model's config hash;
- :mod:`.gmodiff`: GMODiff's gain map (Eq. 1, exp2 and its mu-law training form) and its
  exposure-bracket inputs.
"""
