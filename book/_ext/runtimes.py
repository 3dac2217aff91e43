"""Sphinx directive ``runtimes``: a table of each chapter's run time, read at build time from the
executed notebooks' papermill metadata (``metadata.papermill.duration``), so that the reproduce
page states measured times, never typed ones.

    ```{runtimes}
    ```

Lists ``notebooks/[0-9]*.ipynb`` under the book's source folder, in file order, with the first
heading of each as its title; a notebook without papermill metadata (never executed by papermill)
is an error, since its outputs would not be the committed ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive


def chapter_runtimes(root: Path) -> list[tuple[str, str, float]]:
    """(file, title, seconds) per numbered notebook under root/notebooks."""
    rows = []
    for path in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        nb = json.loads(path.read_text())
        duration = nb.get("metadata", {}).get("papermill", {}).get("duration")
        if duration is None:
            raise ValueError(f"{path.name} has no papermill duration: execute it with papermill (make notebooks)")
        title = next(
            (
                t
                for cell in nb["cells"]
                if cell["cell_type"] == "markdown"
                for t in [_first_heading("".join(cell["source"]))]
                if t
            ),
            path.stem,
        )
        rows.append((path.name, title, float(duration)))
    return rows


def _first_heading(markdown: str) -> str | None:
    """The text of the first level-1 heading outside fenced code, or None."""
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("# "):
            return line[2:].strip()
    return None


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Runtimes(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        root = Path(env.srcdir)
        rows = chapter_runtimes(root)
        for name, _, _ in rows:
            env.note_dependency(str(root / "notebooks" / name))
        header = ("Notebook", "Chapter", "Run time")
        body = [(name, title, _minutes(sec)) for name, title, sec in rows]
        body.append(("all", "", _minutes(sum(sec for _, _, sec in rows))))
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (30, 50, 20):
            group += nodes.colspec(colwidth=width)
        thead, tbody = nodes.thead(), nodes.tbody()
        for parent, lines in ((thead, [header]), (tbody, body)):
            for line in lines:
                row = nodes.row()
                for text in line:
                    entry = nodes.entry()
                    entry += nodes.paragraph(text=text)
                    row += entry
                parent += row
        group += thead
        group += tbody
        return [table]


def setup(app):
    app.add_directive("runtimes", Runtimes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
