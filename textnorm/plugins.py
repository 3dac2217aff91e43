"""The modules shipped with textnorm that register pipelines, adapters and tasks with
:mod:`textnorm.finetune.registry`. Installed copies also declare them as entry points of the group
``textnorm.plugins`` (where other packages add theirs); this list serves a source tree used without
installing it (``PYTHONPATH=.``, as the GPU scripts do)."""

BUILTIN = ("textnorm.synth.register",)
