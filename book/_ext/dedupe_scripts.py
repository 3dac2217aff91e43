"""Sphinx extension: drop repeated identical script entries from each HTML page.

sphinx-thebe (added by Jupyter Book 1.x even with thebe off) registers its inline configuration
script once per reading pass, so pages of a full rebuild declared ``const THEBE_JS_URL`` twice
and the browser console showed "Identifier 'THEBE_JS_URL' has already been declared"
(book/check_pages.py fails on console errors). Keeps the first of each (file, attributes incl. the inline body); the copies differ only in a
filename of None against '' and so escape Sphinx's own check.
"""

from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (
            getattr(script, "filename", str(script)) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
