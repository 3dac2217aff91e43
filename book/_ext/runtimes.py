"""Papermill's record of each chapter in the book, read at build time from the executed notebooks'
metadata, so that the book states measured times and the parameters used, never typed ones.

The directive ``runtimes`` is a table of each chapter's run time (``metadata.papermill.duration``)
for the reproduce page:

    ```{runtimes}
    ```

It lists ``notebooks/[0-9]*.ipynb`` under the book's source folder, in file order, with the first
heading of each as its title; a notebook without papermill metadata (never executed by papermill)
is an error, since its outputs would not be the committed ones.

Under the title of every notebook page, a collapsed box states the run time and date and lists the
parameters the run used: the assignments of the cell tagged ``parameters``, and those papermill
injected (``injected-parameters``), which replace them. A notebook page without papermill metadata
is a warning (an error under ``-W``).
"""

from __future__ import annotations

import ast
import html
import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


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


def _assignments(source: str) -> list[tuple[str, str]]:
    """(name, value as written) of each top-level ``name = value`` in a cell's source; a multi-line
    value is written on one line. A cell that is not Python (a magic) gives none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    rows = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        text = ast.get_source_segment(source, value) or ast.unparse(value)
        text = text if "\n" not in text else ast.unparse(value)
        rows += [(t.id, text) for t in targets if isinstance(t, ast.Name)]
    return rows


def chapter_parameters(nb: dict) -> list[tuple[str, str, bool]]:
    """(name, value, injected) for the ``parameters`` cell's assignments in their order, a value that
    papermill injected replacing the cell's (and marked injected), new injected names after them."""
    params: dict[str, tuple[str, bool]] = {}
    for tag, injected in (("parameters", False), ("injected-parameters", True)):
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code" and tag in cell.get("metadata", {}).get("tags", []):
                source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                for name, value in _assignments(source):
                    params[name] = (value, injected)
    return [(name, value, injected) for name, (value, injected) in params.items()]


def run_summary(nb: dict) -> str | None:
    """'Executed by papermill on 2026-12-05 in 5.3 min', or None without papermill metadata."""
    record = nb.get("metadata", {}).get("papermill", {})
    if record.get("duration") is None:
        return None
    date = (record.get("end_time") or "")[:10]
    return f"Executed by papermill{' on ' + date if date else ''} in {_minutes(float(record['duration']))}"


class chapter_run(nodes.General, nodes.Element):
    """A collapsed box: ``summary`` always shown, the parameters listing when opened (HTML only)."""


def _visit_html(self, node: chapter_run) -> None:
    self.body.append(self.starttag(node, "details", CLASS="tn-chapter-run"))
    self.body.append(f"<summary>{html.escape(node['summary'])}</summary>\n")


def _depart_html(self, node: chapter_run) -> None:
    self.body.append("</details>\n")


def _skip(self, node: chapter_run) -> None:
    raise nodes.SkipNode


def chapter_run_node(nb: dict) -> chapter_run | None:
    """The box for a notebook, or None when it has no papermill metadata."""
    summary = run_summary(nb)
    if summary is None:
        return None
    params = chapter_parameters(nb)
    injected = any(inj for _, _, inj in params)
    summary += f" · {len(params)} parameter{'s' if len(params) != 1 else ''}" if params else " · no parameters"
    node = chapter_run(summary=summary)
    if params:
        lines = [f"{name} = {value}" + ("  # set by papermill" if inj else "") for name, value, inj in params]
        block = nodes.literal_block("\n".join(lines), "\n".join(lines), language="python")
        node += block
        node += nodes.paragraph(
            text="Values marked 'set by papermill' were passed to the run; the others are the parameters cell's."
            if injected
            else "The run used the defaults of the chapter's parameters cell."
        )
    return node


def _insert_chapter_run(app, doctree) -> None:
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix != ".ipynb":
        return
    node = chapter_run_node(json.loads(path.read_text()))
    if node is None:
        LOGGER.warning(
            f"{path.name}: no papermill metadata, so no run time: execute it with papermill (make notebooks)"
        )
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, node)
    else:
        doctree.insert(0, node)


def setup(app):
    app.add_directive("runtimes", Runtimes)
    app.add_node(
        chapter_run,
        html=(_visit_html, _depart_html),
        latex=(_skip, None),
        text=(_skip, None),
        man=(_skip, None),
        texinfo=(_skip, None),
    )
    app.connect("doctree-read", _insert_chapter_run)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
