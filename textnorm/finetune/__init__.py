"""Fine-tuning text-to-image diffusion models against a reward.

- :mod:`textnorm.finetune.adapters`  one interface over diffusers StableDiffusionPipeline-family
  models and the synthetic world's pixel-space pipeline
- :mod:`textnorm.finetune.sampling`  DDIM sampling that records per-step log-probabilities
- :mod:`textnorm.finetune.rewards`   reward functions for training (proxy, TextNorm, ensembles, gold)
- :mod:`textnorm.finetune.loop`      best-of-n, reward-weighted SFT and DDPO (+KL) with checkpoints
"""
