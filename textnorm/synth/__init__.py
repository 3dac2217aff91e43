"""A small world with a known truth: procedurally drawn scenes, a pixel-reading gold judge,
simulated annotators and a text-to-image model trained from scratch on CPU.

- :mod:`textnorm.synth.scenes`      caption grammar, scene sampling, rendering
- :mod:`textnorm.synth.judge`       the gold judge: does an image match a caption?
- :mod:`textnorm.synth.annotators`  three noisy simulated annotators per image
- :mod:`textnorm.synth.generator`   the diffusion generator (diffusers UNet + transformers CLIP text)
- :mod:`textnorm.synth.proxies`     imperfect proxy reward models trained on this world
"""
