"""Training CLIs: HDR VAE, widened DiTs, log-space LoRAs; they write what nodes/ loads."""
