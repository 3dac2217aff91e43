"""Fine-tuning text-to-image diffusion models against a reward.

- :mod:`textnorm.finetune.config`       every setting of a run (one dataclass; the CLI's options)
- :mod:`textnorm.finetune.task`         what is optimised and measured: prompts, contrastive sets, gold judge
- :mod:`textnorm.finetune.adapters`     one interface over diffusers StableDiffusionPipeline-family
  models and the synthetic world's pixel-space pipeline
- :mod:`textnorm.finetune.rewards`      reward functions for training (proxy, TextNorm, ensembles, gold)
- :mod:`textnorm.finetune.loop`         DDPO (+KL) and reward-weighted SFT, checkpoints, export; best-of-n
- :mod:`textnorm.finetune.overopt`      the over-optimisation grid: every run and a best-of-n pool as logs; replay

The sampler with log-probabilities is :mod:`textnorm.ddim`, shared with the pipelines' own sampling.
"""
