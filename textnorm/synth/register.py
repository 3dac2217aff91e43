"""The synthetic world's entries in the trainer's registries (:mod:`textnorm.finetune.registry`):
its pipeline class (so ``load_pipeline`` reads its folders), its adapter, and the ``synth`` task
(the default task of its pipeline). Imported through the ``textnorm.plugins`` entry point."""

from __future__ import annotations

from collections.abc import Sequence

from textnorm.finetune import registry
from textnorm.finetune.task import Task
from textnorm.synth.adapter import make_synth_adapter
from textnorm.synth.generator import SynthPipeline


def _load(path: str, device: str) -> SynthPipeline:
    return SynthPipeline.from_pretrained(path).to(device)


def _task(prompts: Sequence[str] = (), n_train: int = 8, seed: int = 0, res: int = 16) -> Task:
    """The synthetic world (its captions, rules and gold judge); ``prompts`` override the training captions."""
    from textnorm.synth.task import synth_task

    task = synth_task(n_train=n_train, seed=seed, res=res)
    if prompts:
        task.train_prompts = list(dict.fromkeys(prompts))
    return task


registry.register_pipeline("SynthPipeline", _load)
registry.register_adapter(SynthPipeline, make_synth_adapter)
registry.register_task("synth", _task, default_for=SynthPipeline)
