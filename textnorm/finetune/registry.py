"""Pipelines, adapters and tasks by name, so that the trainer knows no model family and no world.

- :func:`register_pipeline` (class name -> loader(path, device)): :func:`textnorm.finetune.loop.load_pipeline`
  reads ``_class_name`` from a folder's ``model_index.json`` and calls the loader registered for it
  (diffusers' ``StableDiffusionPipeline`` for the Stable Diffusion family otherwise).
- :func:`register_adapter` (pipeline type -> factory(pipe, resolution)): :func:`textnorm.finetune.adapters.make_adapter`
  takes the first registered type the pipeline is an instance of (Stable Diffusion's adapter otherwise).
- :func:`register_task` (name -> factory(prompts, n_train, seed, res), optionally the default task of a
  pipeline type): :func:`textnorm.finetune.task.make_task` and ``task="auto"``.

Other parts of textnorm (and other packages) register theirs when imported; the modules to import
are declared as entry points of the group ``textnorm.plugins`` (pyproject.toml: the synthetic world's
``textnorm.synth.register``; :mod:`textnorm.plugins` lists textnorm's own for an uninstalled source
tree) and imported the first time a registry is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PLUGIN_GROUP = "textnorm.plugins"

PIPELINES: dict[str, Callable[[str, str], Any]] = {}
ADAPTERS: list[tuple[type, Callable[[Any, int | None], Any]]] = []
TASKS: dict[str, Callable[..., Any]] = {}
DEFAULT_TASKS: list[tuple[type, str]] = []  # pipeline type -> the task "auto" picks for it

_loaded = False


def register_pipeline(class_name: str, loader: Callable[[str, str], Any]) -> None:
    PIPELINES[class_name] = loader


def register_adapter(pipeline_type: type, factory: Callable[[Any, int | None], Any]) -> None:
    ADAPTERS[:] = [(t, f) for t, f in ADAPTERS if t is not pipeline_type] + [(pipeline_type, factory)]


def register_task(name: str, factory: Callable[..., Any], default_for: type | None = None) -> None:
    TASKS[name] = factory
    if default_for is not None:
        DEFAULT_TASKS[:] = [(t, n) for t, n in DEFAULT_TASKS if t is not default_for] + [(default_for, name)]


def load_plugins() -> None:
    """Import textnorm's own plugins, then every module declared under the ``textnorm.plugins``
    entry points (once). A plugin that fails to import is named in a warning and skipped, so that it
    cannot take the others down."""
    global _loaded
    if _loaded:
        return
    import importlib
    import warnings
    from importlib.metadata import entry_points

    from textnorm.plugins import BUILTIN

    for name in BUILTIN:  # first, and also in a source tree that was not installed (no entry points)
        importlib.import_module(name)
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.value in BUILTIN:
            continue
        try:
            ep.load()
        except Exception as exc:  # a third party's plugin: any failure is theirs
            warnings.warn(
                f"textnorm plugin {ep.name} ({ep.value}) failed to load and is skipped: {exc!r}", stacklevel=2
            )
    _loaded = True


def pipeline_loader(class_name: str) -> Callable[[str, str], Any] | None:
    load_plugins()
    return PIPELINES.get(class_name)


def adapter_factory(pipe: Any) -> Callable[[Any, int | None], Any] | None:
    load_plugins()
    return next((f for t, f in ADAPTERS if isinstance(pipe, t)), None)


def task_factory(name: str) -> Callable[..., Any]:
    load_plugins()
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def default_task(pipe: Any) -> str:
    """The task ``auto`` means for this pipeline: the one registered for its type, else ``prompts``."""
    load_plugins()
    return next((n for t, n in DEFAULT_TASKS if isinstance(pipe, t)), "prompts")
