"""The ``textnorm`` command line.

- ``textnorm fetch``     download (or locate in a mirror) and verify the TIA2 files
- ``textnorm score``     score a folder of TIA2 images with a registered reward, raw or TextNorm
- ``textnorm evaluate``  per-image scores -> per-prompt metrics in the published JSON layout
- ``textnorm finetune``  fine-tune a generator against a reward (DDPO or reward-weighted SFT)
- ``textnorm overopt``   the over-optimisation grid's run logs (read by the overoptimization chapter)
- ``textnorm runs``      a set of fine-tuning runs from one parameter file (e.g. the paper's, params/paper_ddpo.yaml)
- ``textnorm contrastive``  contrastive prompts of any prompts (a local LLM or the rules) as the JSON --contrastive reads
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from textnorm.files import atomic_write
from textnorm.tia2 import data


class CLIError(Exception):
    """An error the user can fix; printed without a traceback."""


def _check_out(
    out: str, inputs: tuple[str | None, ...] = (), overwrite: bool = False, folder: bool = False, flag: str = "--out"
) -> Path:
    """Refuse, before any work, an output that is an input, a file where a folder is wanted (or the
    reverse), or that holds earlier results (unless ``overwrite``); ``flag`` names the option."""
    path = Path(out)
    for src in inputs:
        if src and Path(src).exists() and path.exists() and path.resolve() == Path(src).resolve():
            raise CLIError(f"{flag} {out} is also an input; write the results elsewhere")
    if folder:
        if path.exists() and not path.is_dir():
            raise CLIError(f"{flag} {out} is a file; name a folder")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise CLIError(f"{flag} {out} is not empty; choose a new folder or pass --overwrite to replace it")
    else:
        if path.is_dir():
            raise CLIError(f"{flag} {out} is a folder; name the file to write")
        if path.exists() and not overwrite:
            raise CLIError(f"{out} exists; choose another --out or pass --overwrite to replace it")
    return path


def _source(args) -> dict:
    return {"mirror": args.mirror}


def _cmd_fetch(args: argparse.Namespace) -> int:
    paths = data.fetch(args.subset, mirror=args.mirror, cache_dir=args.cache, base_url=args.url)
    for rel, path in paths.items():
        print(f"ok  {rel}  ->  {path}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import torch

    from textnorm import tia2
    from textnorm.rewards import REWARDS, load_reward
    from textnorm.rewards import contrastive as prompt_rules
    from textnorm.tia2 import scoring

    if args.reward not in REWARDS:
        raise CLIError(f"unknown reward {args.reward!r}; choose one of: {', '.join(sorted(REWARDS))}")
    _check_out(args.out, overwrite=args.overwrite)
    if args.limit_prompts < 0:
        raise CLIError(f"--limit-prompts must be >= 0 (0: all prompts), got {args.limit_prompts}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not (args.temperature > 0 and args.temperature != float("inf")):
        raise CLIError(f"--temperature must be a finite number > 0, got {args.temperature}")
    if args.dtype != "float32" and not args.device.startswith("cuda"):
        raise CLIError(f"--dtype {args.dtype} needs a GPU (--device cuda); on CPU use float32")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: no CUDA GPU is available here (torch.cuda.is_available() is False)")
    images = tia2.load_images([args.subset], **_source(args))
    if args.limit_prompts:
        keep = images["prompt"].drop_duplicates().head(args.limit_prompts)
        images = images[images["prompt"].isin(keep)]
    contrastive = None
    if args.textnorm:
        if args.contrastive == "published":
            contrastive, dropped = tia2.clean_contrastive(tia2.load_contrastive_prompts(args.subset, **_source(args)))
            if dropped["sets"]:
                print(
                    f"published contrastive sets of {args.subset}: dropped {dropped['duplicates']} repeated prompts and "
                    f"{dropped['self']} copies of the prompt itself from {dropped['sets']} sets"
                )
        else:
            rule = {
                "counting": prompt_rules.counting_contrastive,
                "composition": prompt_rules.composition_contrastive,
            }.get(args.subset)
            if rule is None:
                raise CLIError(
                    f"no rule-based contrastive prompts for subset {args.subset!r}; use --contrastive published"
                )
            contrastive = {p: rule(p) for p in images["prompt"].unique()}
    scoring.check_images(args.images, list(images["image"]))  # fail before loading any model
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    reward = load_reward(args.reward, args.model, device=args.device, dtype=dtype, batch_size=args.batch_size)
    table = scoring.score_table(
        reward, images, args.images, contrastive, temperature=args.temperature, progress=not args.quiet
    )
    atomic_write(args.out, lambda f: table.to_csv(f, index=False))
    print(f"wrote {len(table)} rows to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from textnorm import tia2
    from textnorm.tia2 import evaluation

    _check_out(args.out, inputs=(args.scores,), overwrite=args.overwrite)
    try:
        scores = pd.read_csv(args.scores)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CLIError(f"cannot read scores CSV {args.scores}: {exc}") from exc
    if "image" not in scores:
        raise CLIError(f"{args.scores} has no 'image' column (columns: {list(scores.columns)})")
    if scores.empty:  # before the subset is read off the first row, which a header-only file lacks
        raise CLIError(f"{args.scores} has a header but no rows")
    if "subset" in scores and scores["subset"].nunique() > 1:
        raise CLIError("the scores file holds several subsets; evaluate one subset at a time")
    subset = args.subset or (scores["subset"].iloc[0] if "subset" in scores else None)
    if subset not in data.SUBSETS:
        raise CLIError(f"say which TIA2 subset the scores belong to (--subset {'|'.join(data.SUBSETS)})")
    images = tia2.load_images([subset], **_source(args))
    table = evaluation.metrics_from_scores(scores, images, args.column or None, partial=args.partial)
    cov = evaluation.coverage(scores, images)
    layout = evaluation.to_published_layout(table)
    atomic_write(args.out, lambda f: f.write(json.dumps(layout, indent=1).encode()))
    scored = cov[cov.n_scored > 0]
    part = int((scored.n_scored < scored.n_images).sum())
    print(
        f"coverage: {len(scored)} of {len(cov)} {subset} prompts scored ({int(scored.n_scored.sum())} images); "
        + (
            f"{part} prompts PARTLY scored (their metrics use the scored images only; 'coverage' in the JSON)"
            if part
            else "every scored prompt complete"
        )
    )
    models = ", ".join(table["model"].unique()) if len(table) else "none"
    print(
        f"wrote metrics of {len(layout)} prompts ({models}) to {args.out} "
        f"(prompts whose images share one verdict are left out)"
    )
    return 0


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from textnorm import manifest
    from textnorm.synth.config import TrainConfig
    from textnorm.synth.train import train_generator

    _check_out(args.out, overwrite=args.overwrite, folder=True)
    cfg = config_from_args(TrainConfig, args)
    log = train_generator(args.out, cfg, progress=not args.quiet)
    manifest.record(args.out, "textnorm train-generator", asdict(cfg))
    last = log["eval"][-1]
    print(
        f"saved {args.out}: held-out gold alignment {last['heldout_gold_alignment']:.3f} "
        f"after {last['step']} steps ({last['seconds']:.0f} s)"
    )
    return 0


def _cmd_train_proxy(args: argparse.Namespace) -> int:
    from textnorm import manifest
    from textnorm.synth.config import ProxyConfig
    from textnorm.synth.proxies import train_proxy

    _check_out(args.out, overwrite=args.overwrite, folder=True)
    cfg = config_from_args(ProxyConfig, args)
    log = train_proxy(args.out, cfg, progress=not args.quiet)
    manifest.record(args.out, f"textnorm train-proxy --kind {args.kind}", log["config"])
    print(f"saved {args.kind} proxy to {args.out} (final loss {log['loss'][-1]['loss']:.3f})")
    return 0


def _cmd_build_synth(args: argparse.Namespace) -> int:
    import torch

    from textnorm import manifest
    from textnorm.synth import benchmark
    from textnorm.synth.generator import SynthPipeline

    if not args.out.endswith(".npz"):
        args.out += ".npz"  # what numpy writes; checked and recorded under the real name
    _check_out(args.out, inputs=(args.generator,), overwrite=args.overwrite)
    torch.set_num_threads(args.threads)
    pipe = SynthPipeline.from_pretrained(args.generator)
    prompts = benchmark.choose_prompts(args.composition_prompts, seed=args.seed)
    images, table = benchmark.build(pipe, prompts, n_images=args.images, seed=args.seed, progress=not args.quiet)
    benchmark.save(args.out, images, table)
    manifest.record(
        args.out,
        "textnorm build-synth-benchmark",
        {
            "generator": args.generator,
            "images": args.images,
            "composition_prompts": args.composition_prompts,
            "seed": args.seed,
        },
    )
    print(
        f"wrote {len(table)} images of {table.prompt.nunique()} prompts to {args.out}; "
        f"gold alignment {table.gold.mean():.3f}"
    )
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.finetune.loop import clean_stale_temps, finetune

    cfg = config_from_args(FinetuneConfig, args)
    if args.resume and args.overwrite:
        raise CLIError("--resume continues the run in --out and --overwrite replaces it: choose one")
    clean_stale_temps(args.out)  # a write killed midway left them; a folder holding only them is empty
    if not args.resume:
        _check_out(args.out, overwrite=args.overwrite, folder=True)
    if args.export:  # before the run, not after an hour of training
        _check_out(args.export, overwrite=args.overwrite, folder=True, flag="--export")
    if args.allow_changed_inputs and not args.resume:
        raise CLIError("--allow-changed-inputs applies to --resume only")
    metrics = finetune(
        cfg,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
        overwrite=args.overwrite,
        allow_changed_inputs=args.allow_changed_inputs,
        export=args.export,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch one process reports
        return 0
    last = metrics[-1] if metrics else {}
    print(
        f"{len(metrics)} steps; last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step" and isinstance(v, float))
    )
    print(f"metrics and checkpoint in {args.out}")
    return 0


def config_from_args(cls, args: argparse.Namespace):
    """The config dataclass ``cls`` from the options :func:`_add_config_options` made of its fields."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _add_config_options(p: argparse.ArgumentParser, cls) -> None:
    """One option per dataclass field, with the field's default, type and help (one definition)."""
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kwargs = {"help": f.metadata.get("help", "").replace("%", "%%") + " (default: %(default)s)"}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kwargs = {
                "help": f.metadata.get("help", "").replace("%", "%%"),
                "required": True,
                **{k: v for k, v in kwargs.items() if k == "choices"},
            }
            p.add_argument(flag, type=hint, **kwargs)
            continue
        if hint == list[str]:
            p.add_argument(
                "--" + f.name.rstrip("s").replace("_", "-"),
                dest=f.name,
                action="append",
                default=[],
                help=f.metadata.get("help", "").replace("%", "%%"),
            )
            continue
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        p.add_argument(flag, type=base, default=f.default, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textnorm",
        description="TextNorm and the TIA2 benchmark: data, rewards, calibration and evaluation.",
    )
    from textnorm.finetune.config import FinetuneConfig
    from textnorm.synth.config import ProxyConfig, TrainConfig

    sub = parser.add_subparsers(dest="command", required=True)
    mirror_help = f"offline folder with the TIA2 files (default: ${data.ENV_MIRROR}, else download)"

    p = sub.add_parser(
        "fetch",
        help="download and sha256-verify the TIA2 files (or check an offline mirror)",
        description=(
            f"Download the nine TIA2 JSON files from {data.TIA2_REPO} at commit {data.TIA2_COMMIT} "
            f"and verify their sha256. With --mirror (or ${data.ENV_MIRROR}) the files are read "
            "from that folder instead and only verified."
        ),
    )
    p.add_argument("--mirror", default=None, help=mirror_help)
    p.add_argument(
        "--cache", default=None, help=f"download folder (default: ${data.ENV_CACHE} or data/tia2 in the repository)"
    )
    p.add_argument("--url", default=None, help="base URL to download from (default: the pinned upstream commit)")
    p.add_argument(
        "--subset",
        nargs="+",
        default=list(data.SUBSETS),
        choices=data.SUBSETS,
        help="subsets to fetch (default: all three)",
    )
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "score",
        help="score a folder of TIA2 images with a reward model into a CSV",
        description=(
            "Score every annotated image of a TIA2 subset (files named as in the annotations, "
            "image_<prompt>_<i>_<j>.jpg) against its prompt. With --textnorm, also against the "
            "prompt's contrastive prompts, adding the TextNorm probability column."
        ),
    )
    p.add_argument("--images", required=True, help="folder holding the subset's images")
    p.add_argument("--subset", required=True, choices=data.SUBSETS)
    p.add_argument("--reward", required=True, help="registered reward: clip, pickscore, blip2, blip2_itc, imagereward")
    p.add_argument("--model", default=None, help="hub id or local folder of the weights (default: the released model)")
    p.add_argument("--out", required=True, help="CSV to write (written only when scoring succeeded)")
    p.add_argument("--textnorm", action="store_true", help="add the TextNorm-calibrated reward")
    p.add_argument(
        "--contrastive",
        choices=["published", "rules"],
        default="published",
        help="contrastive prompt sets: the published TIA2 sets or our rule-based generator",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="TextNorm softmax temperature")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="weights / autocast precision (half precision on GPUs only)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit-prompts", type=int, default=0, help="score only the first N prompts (0: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--mirror", default=None, help=mirror_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "evaluate",
        help="per-image scores -> per-prompt metrics JSON (published layout)",
        description=(
            "Join a scores CSV (column 'image', optional 'subset', numeric score columns) with the "
            "TIA2 labels and compute AUROC, AUPRC, AP@5/10/25, Spearman and Kendall per prompt, "
            "written as {prompt: {'human': ..., <column>: {...}}} like the published files."
        ),
    )
    p.add_argument("--scores", required=True, help="CSV from `textnorm score` (or any with an image column)")
    p.add_argument("--subset", default=None, choices=data.SUBSETS, help="default: the CSV's subset column")
    p.add_argument("--column", nargs="*", default=None, help="score columns to evaluate (default: all numeric)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument(
        "--partial",
        action="store_true",
        help="evaluate prompts of which only some images are scored (default: refuse them); "
        "such prompts get 'coverage': [scored, annotated] in the JSON",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--mirror", default=None, help=mirror_help)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "train-generator",
        help="train the synthetic world's text-to-image model from scratch (CPU)",
        description="Train the pixel-space diffusion generator of the synthetic world on freshly rendered "
        "scenes of the training captions and save it as a diffusers pipeline folder.",
    )
    p.add_argument("--out", default="data/synth/generator", help="output folder (default: %(default)s)")
    _add_config_options(p, TrainConfig)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds (e.g. the shipped artifact)")
    p.set_defaults(func=_cmd_train_generator)

    p = sub.add_parser(
        "train-proxy",
        help="train a proxy reward model of the synthetic world",
        description="Train the contrastive (weak at counting) or the preference (likes large "
        "objects) proxy reward; saved as a CLIP model folder for the reward registry.",
    )
    _add_config_options(p, ProxyConfig)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds (e.g. the shipped artifact)")
    p.set_defaults(func=_cmd_train_proxy)

    p = sub.add_parser(
        "build-synth-benchmark",
        help="sample TIA2-synth: prompts x images x 3 simulated labels",
        description="Sample images of the base generator for every counting caption and held-out "
        "composition captions, label them with three simulated annotators and the gold "
        "judge, and save the images and table (.npz).",
    )
    p.add_argument("--generator", default="data/synth/generator")
    p.add_argument("--out", default="data/synth/tia2_synth.npz")
    p.add_argument("--images", type=int, default=50, help="images per prompt")
    p.add_argument("--composition-prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds (e.g. the shipped artifact)")
    p.set_defaults(func=_cmd_build_synth)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a diffusion model against a reward (reward-weighted SFT or DDPO)",
        description="Fine-tune the synthetic generator or any StableDiffusionPipeline-family model (hub id or "
        "folder) against a reward: gold, raw:PATH, raw-mean:P1,P2, textnorm:PATH, textnorm-mean:P1,P2, textnorm-ur:P1,P2. "
        "Writes metrics.json, state.json and checkpoint.pt to --out; --resume continues a run exactly "
        "(with the same settings but --steps). "
        "Multi-GPU: accelerate launch -m textnorm.cli finetune ...",
    )
    _add_config_options(p, FinetuneConfig)
    p.add_argument("--out", required=True, help="folder for metrics.json, state.json and checkpoint.pt")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument(
        "--allow-changed-inputs",
        action="store_true",
        help="with --resume: continue even though the base model's or the reward's files changed since the run "
        "started (refused by default; their sha256 are in the checkpoint)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run saved in --out")
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="after training, write a model that loads without textnorm to DIR: with --lora-rank, DIR/lora for "
        "diffusers' pipe.load_lora_weights; else DIR/pipeline for from_pretrained",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser(
        "overopt",
        help="run the over-optimisation grid (every method x reward x seed, and a best-of-n pool) into run logs",
        description="Fine-tune the synthetic generator with every reward of the grid, for every method and seed, "
        "and score one best-of-n pool; write one JSON log per run, bon.npz and grid.json to --out (inside data/ "
        "also their sha256 in data/MANIFEST.json). The overoptimization chapter reads these logs. Default grid: "
        "params/overopt_cpu.yaml, the pre-registered CPU grid (about 6 hours on 2 cores; data/MANIFEST.json records the last wall time). The default --out holds the shipped "
        "logs: replacing them needs --overwrite, which writes a new folder and swaps it in only when every run "
        "has finished. After a kill, the same command with --overwrite (or --resume) goes on: finished runs are "
        "kept, and a run that was training goes on from its checkpoint (saved after the first step that ends a "
        "minute or more after the last save) with the same numbers.",
    )
    p.add_argument("--out", default="data/overopt", help="output folder (default: %(default)s)")
    p.add_argument(
        "--grid",
        default=None,
        help="a JSON or YAML file holding another grid, or a papermill parameter file with a 'grid' key "
        "(e.g. params/overopt_gpu.yaml; the grid's layout: textnorm.experiments.overopt)",
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes of one torch thread each (default: 2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="keep the runs --out already holds for the same grid")
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what --out holds (e.g. the shipped logs) once the new runs end",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_overopt)

    p = sub.add_parser(
        "study",
        help="draw the images of the over-optimisation grid's fine-tuned models for the human-evaluation chapter",
        description="Choose the study's systems from the grid's logs (the base model; for each pair, the raw and "
        "the TextNorm DDPO model of the first seed at the pair's common KL and at the end of training: "
        "textnorm.experiments.study.study_systems), train those runs again (compared with their logs) and draw "
        "IMAGES images per system for PROMPTS held-out captions from one noise; write study.npz and study.json to "
        "--out (inside data/ also their sha256 in data/MANIFEST.json).",
    )
    p.add_argument("--logs", default="data/overopt", help="the grid's logs (default: %(default)s)")
    p.add_argument("--out", default="data/study", help="output folder (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=40, help="held-out captions in the study (default: %(default)s)")
    p.add_argument("--images", type=int, default=4, help="images per system and prompt (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="picks the captions and the noise (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of one torch thread each (default: 2)")
    p.add_argument("--overwrite", action="store_true", help="replace the study --out holds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser(
        "runs",
        help="run a set of fine-tuning runs from one parameter file (e.g. params/paper_ddpo.yaml)",
        description="Run every (prompt set, reward, seed) of a parameter file one after another, each into "
        "OUT/RUN (checkpoints, metrics.jsonl) with its trained model exported to OUT/RUN/model (the LoRA for "
        "diffusers' load_lora_weights). A finished run is skipped; --resume continues interrupted ones from their "
        "checkpoints. The file's layout: textnorm.experiments.runs.",
    )
    p.add_argument("file", help="the parameter file (YAML or JSON)")
    p.add_argument("--out", required=True, help="folder for the runs")
    p.add_argument("--resume", action="store_true", help="continue the unfinished runs in --out")
    p.add_argument("--only", action="append", default=[], metavar="RUN", help="only this run (repeat)")
    p.add_argument("--list", action="store_true", help="list the file's runs and their state, train nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser(
        "contrastive",
        help="write contrastive prompts of any prompts to a JSON file (for --contrastive)",
        description="Contrastive prompts for TextNorm, written as the JSON file {prompt: [contrastive prompts]} that "
        "`textnorm finetune --contrastive FILE` reads: from a local causal LM (hub id or folder; sampling seeded per "
        "prompt) or from the rule-based counting and composition generators. A prompt that gets no contrastive "
        "prompt is named and nothing is written.",
    )
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeat)")
    p.add_argument("--prompts-file", default=None, help="a text file of prompts, one per line")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--llm", default=None, metavar="MODEL", help="a causal LM: hub id or local folder")
    src.add_argument("--rules", action="store_true", help="the rule-based generators (counting, composition)")
    p.add_argument("-n", type=int, default=20, help="LLM: contrastive prompts per prompt (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_contrastive)
    return parser


def _cmd_contrastive(args: argparse.Namespace) -> int:
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [line.strip() for line in Path(args.prompts_file).read_text(encoding="utf-8").splitlines()]
    prompts = list(dict.fromkeys(p for p in prompts if p))
    if not prompts:
        raise CLIError("no prompts: give --prompt (repeat) or --prompts-file")
    if args.n < 1:
        raise CLIError("-n must be >= 1")
    out = _check_out(args.out, inputs=(args.prompts_file,), overwrite=args.overwrite)
    if args.llm:
        from textnorm.finetune.inputs import check_device
        from textnorm.rewards.contrastive import llm_contrastive_prompts

        check_device(args.device)
        sets = llm_contrastive_prompts(prompts, args.llm, n=args.n, device=args.device, seed=args.seed)
    else:
        from textnorm.finetune.task import rule_contrastive

        sets = {}
        for p in prompts:
            try:
                sets[p] = rule_contrastive(p)
            except ValueError:
                sets[p] = []
    from textnorm.tia2.annotations import clean_contrastive

    sets, _ = clean_contrastive(sets)  # as --contrastive will read them
    empty = [p for p, c in sets.items() if not c]
    if empty:
        raise CLIError(f"no contrastive prompts for {len(empty)} prompt(s): " + "; ".join(repr(p) for p in empty))
    atomic_write(out, lambda f: f.write((json.dumps(sets, indent=1, ensure_ascii=False) + "\n").encode()))
    print(f"wrote contrastive prompts of {len(sets)} prompt(s) to {out}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from textnorm.experiments import runs

    if args.list:
        for name, cfg in runs.configs(runs.read(args.file)).items():
            folder = Path(args.out) / name
            state = "finished" if runs.finished(folder) else "started" if folder.is_dir() else "not started"
            print(f"{name}: {cfg.method}, reward {cfg.reward}, {cfg.steps} steps ({state})")
        return 0
    trained = runs.run_all(args.file, args.out, resume=args.resume, only=args.only or None, progress=not args.quiet)
    print(f"trained {len(trained)} run(s) into {args.out}" + (f": {', '.join(trained)}" if trained else ""))
    return 0


def _cmd_overopt(args: argparse.Namespace) -> int:
    from textnorm.experiments import overopt

    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    grid = None  # the default grid file
    if args.grid:
        from textnorm.files import read_data

        try:
            grid = read_data(args.grid)
        except ValueError as exc:
            raise CLIError(f"--grid: {exc}") from None
        if isinstance(grid, dict) and "grid" in grid:
            grid = grid["grid"]  # a papermill parameter file
        if not isinstance(grid, dict) or not {"model", "rewards", "methods", "seeds"} <= set(grid):
            raise CLIError(f"--grid {args.grid} holds no grid (a mapping with model, rewards, methods, seeds)")
    out = overopt.run(
        args.out, grid, workers=args.workers, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
    )
    print(f"wrote {out}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from textnorm import manifest
    from textnorm.experiments import overopt, study

    if args.workers < 1 or args.prompts < 4 or args.images < 1 or args.seed < 0:
        raise CLIError("--workers and --images must be >= 1, --prompts >= 4 (selection and test), --seed >= 0")
    logs = overopt.load(args.logs)
    systems = study.study_systems(logs)
    out = study.make_study(
        logs,
        systems,
        overopt.bon_prompts(args.prompts, args.seed),
        args.out,
        n_images=args.images,
        noise_seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    settings = {"logs": str(args.logs), "prompts": args.prompts, "images": args.images, "seed": args.seed}
    manifest.record(out, "textnorm study", settings)
    print(f"wrote {out}: {len(systems)} systems")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, data.TIA2IntegrityError, OSError, KeyError, ValueError, FloatingPointError) as exc:
        # OSError: filesystem failures (no space, read-only, a file where a folder should be)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"textnorm {args.command}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
