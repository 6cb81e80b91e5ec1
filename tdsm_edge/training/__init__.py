"""Training: the skeleton encoder, the denoiser (triplet diffusion loss), evaluation, baselines."""
