"""Sphinx extension: the repository link, the edit button and the Binder and Colab launch buttons,
from a repository URL read at build time, never typed into the configuration.

The URL is the first of:

1. ``TEXTNORM_REPOSITORY_URL`` (any https URL of a GitHub, GitLab or Bitbucket repository);
2. ``GITHUB_SERVER_URL``/``GITHUB_REPOSITORY``, which GitHub Actions sets in every job
   (.github/workflows/book.yml);
3. the git remote ``origin`` of the book's folder (an ``git@host:org/repo.git`` remote is read as
   ``https://host/org/repo``).

With none, the book is built without those buttons (and without pointing at Jupyter Book's own
repository, its default). The branch the buttons link to is ``TEXTNORM_REPOSITORY_BRANCH``, else the
branch GitHub Actions builds (``GITHUB_REF_NAME``), else ``main``. The launch services are
_config.yml's ``launch_buttons`` (Jupyter Book's own setting), kept only when the URL is known; Colab
only opens notebooks on GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
PROVIDERS = ("github", "gitlab", "bitbucket")  # the hosts sphinx-book-theme makes buttons for


def normalise(url: str | None) -> str | None:
    """``https://host/org/repo`` of a remote URL (https, ssh or scp-like), or None for anything else
    (a local path, a file:// remote, a URL without an owner and a name)."""
    if not url or not url.strip():
        return None
    url = url.strip()
    scp = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)", url)  # git@github.com:org/repo.git
    if scp and "/" in scp.group(2):
        host, path = scp.group(1), scp.group(2)
    else:
        parsed = urlparse(url)
        if parsed.scheme not in ("https", "http", "ssh", "git") or not parsed.hostname:
            return None
        host, path = parsed.hostname, parsed.path
    parts = [p for p in path.removesuffix("/").removesuffix(".git").split("/") if p]
    if len(parts) < 2:
        return None
    return f"https://{host}/{'/'.join(parts)}"


def _git_origin(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def repository_url(environ: Mapping[str, str], root: Path | None = None) -> str | None:
    """The repository's https URL from the environment or the git remote ``origin``, or None."""
    if environ.get("TEXTNORM_REPOSITORY_URL"):
        return normalise(environ["TEXTNORM_REPOSITORY_URL"])
    if environ.get("GITHUB_SERVER_URL") and environ.get("GITHUB_REPOSITORY"):
        return normalise(f"{environ['GITHUB_SERVER_URL'].rstrip('/')}/{environ['GITHUB_REPOSITORY']}")
    return normalise(_git_origin(root)) if root is not None else None


def repository_branch(environ: Mapping[str, str]) -> str:
    if environ.get("TEXTNORM_REPOSITORY_BRANCH"):
        return environ["TEXTNORM_REPOSITORY_BRANCH"]
    if environ.get("GITHUB_REF_TYPE", "branch") == "branch" and environ.get("GITHUB_REF_NAME"):
        return environ["GITHUB_REF_NAME"]
    return "main"


def provider(url: str) -> str | None:
    host = urlparse(url).hostname or ""
    return next((p for p in PROVIDERS if p in host.lower()), None)


def theme_options(url: str | None, branch: str, launch: Mapping[str, str]) -> dict:
    """sphinx-book-theme options for the repository and launch buttons; with no URL (or a host the
    theme cannot link to), options that turn every such button off."""
    off = {
        "repository_url": "",
        "use_repository_button": False,
        "use_edit_page_button": False,
        "use_issues_button": False,
        "use_source_button": False,
        "launch_buttons": {},
    }
    host = provider(url) if url else None
    if host is None:
        return off
    buttons = dict(launch)
    if host != "github":
        buttons.pop("colab_url", None)
    return off | {
        "repository_url": url,
        "repository_branch": branch,
        "path_to_docs": "",  # the book's root is the repository's root
        "use_repository_button": True,
        "use_edit_page_button": True,
        "launch_buttons": buttons,
    }


def _configure(app, config) -> None:
    url = repository_url(os.environ, Path(app.srcdir))
    current = config.html_theme_options or {}
    options = theme_options(url, repository_branch(os.environ), current.get("launch_buttons") or {})
    if url and not options["repository_url"]:
        LOGGER.info(f"repository {url}: not on GitHub, GitLab or Bitbucket; no repository buttons")
    elif not url:
        LOGGER.info(
            "no repository URL (TEXTNORM_REPOSITORY_URL, GitHub Actions, git remote origin): no repository buttons"
        )
    config.html_theme_options = {**current, **options}


def setup(app):
    app.connect("config-inited", _configure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
