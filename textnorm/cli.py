"""The ``textnorm`` command line. Sub-commands:

- ``textnorm fetch``: download (or locate in a mirror) and verify the TIA2 files.
"""

from __future__ import annotations

import argparse
import sys

from textnorm import data


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        paths = data.fetch(args.subset, mirror=args.mirror, cache_dir=args.cache, base_url=args.url)
    except (data.TIA2IntegrityError, ValueError) as exc:
        print(f"textnorm fetch: {exc}", file=sys.stderr)
        return 1
    for rel, path in paths.items():
        print(f"ok  {rel}  ->  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textnorm",
        description="TextNorm and the TIA2 benchmark: data, rewards, calibration and evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "fetch",
        help="download and sha256-verify the TIA2 files (or check an offline mirror)",
        description=(
            f"Download the nine TIA2 JSON files from {data.TIA2_REPO} at commit {data.TIA2_COMMIT} "
            f"and verify their sha256. With --mirror (or ${data.ENV_MIRROR}) the files are read "
            "from that folder instead and only verified."
        ),
    )
    p.add_argument("--mirror", default=None,
                   help=f"offline folder with the upstream layout (default: ${data.ENV_MIRROR})")
    p.add_argument("--cache", default=None,
                   help=f"download folder (default: ${data.ENV_CACHE} or data/tia2 in the repository)")
    p.add_argument("--url", default=None, help="base URL to download from (default: the pinned upstream commit)")
    p.add_argument("--subset", nargs="+", default=list(data.SUBSETS), choices=data.SUBSETS,
                   help="subsets to fetch (default: all three)")
    p.set_defaults(func=_cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
