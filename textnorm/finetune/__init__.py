"""Fine-tuning text-to-image diffusion models against a reward.

- :mod:`textnorm.finetune.config`       every setting of a run (one dataclass; the CLI's options)
- :mod:`textnorm.finetune.task`         what is optimised and measured: prompts, contrastive sets, gold judge
- :mod:`textnorm.finetune.adapters`     one interface over diffusers StableDiffusionPipeline-family
  models and the synthetic world's pixel-space pipeline
- :mod:`textnorm.finetune.rewards`      reward functions for training (proxy, TextNorm, ensembles, gold)
- :mod:`textnorm.finetune.registry`     pipelines, adapters and tasks by name (plugins register theirs)
- :mod:`textnorm.finetune.inputs`       what a run loads: local folders or hub ids, devices, sha256 of inputs
- :mod:`textnorm.finetune.loop`         a run: setup (accelerate, precision, LoRA) and its steps; ``finetune``
- :mod:`textnorm.finetune.sampling`     the policy's DDIM chain on a process's share, evaluation, scoring
- :mod:`textnorm.finetune.ddpo`         a DDPO round (+KL); its arithmetic in :mod:`textnorm.finetune.ppo`
- :mod:`textnorm.finetune.rwsft`        reward-weighted SFT: pools and updates
- :mod:`textnorm.finetune.checkpoint`   checkpoints that survive crashes, and what a resume checks
- :mod:`textnorm.finetune.runlog`       metrics.jsonl, a row appended as each step ends
- :mod:`textnorm.finetune.export`       a model that loads without textnorm
- :mod:`textnorm.finetune.bestofn`      best-of-n from the base model
- :mod:`textnorm.finetune.seeding`      the random streams of a run (learning-rate schedules: :mod:`textnorm.schedules`)

The sampler with log-probabilities is :mod:`textnorm.ddim`, shared with the pipelines' own sampling.
"""
