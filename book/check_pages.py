"""Load every page of the built book in a real (headless) Chromium and check what a reader sees.

For each ``*.html`` page under the build folder (search and genindex pages excepted), at a
1280 x 800 window: the page must not scroll horizontally (document width <= window width; a
wide table or figure inside its own scrolling box is allowed only if it needs no more than 2 px
to scroll), no table, image, code block or formula may reach past the text column (it would
overlap the table of contents), every ``<img>`` and every local file the page requests must load,
and the browser console must show no errors (nor uncaught page errors), one second after load.
Offline (as in CI) MathJax cannot load from its CDN, so formulas stay raw TeX and their rendered
width is not checked. External resources that cannot be reached (the
check runs offline; MathJax comes from a CDN) are listed as notes, not failures. Prints one line per failing page and exits 1
if any fails.

    python book/check_pages.py _build/html                       # Chromium from $CHROMIUM or PATH
    python book/check_pages.py _build/html --chromium /usr/bin/chromium

Needs the ``playwright`` Python package and a Chromium executable (Debian: ``apt-get install
chromium``); Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

WIDTH, HEIGHT = 1280, 800
SKIP = {"search.html", "genindex.html", "py-modindex.html"}

# horizontal overflow of the document, and of any element that scrolls horizontally by itself
MEASURE = """() => {
  const doc = document.documentElement;
  const boxes = [];
  for (const el of document.querySelectorAll('main *')) {
    if (el.scrollWidth - el.clientWidth > 2 && getComputedStyle(el).overflowX !== 'visible'
        && getComputedStyle(el).overflowX !== 'hidden') {
      boxes.push((el.tagName + '.' + (el.className || '')).slice(0, 60) + ' +' + (el.scrollWidth - el.clientWidth) + 'px');
    }
  }
  // content wider than the text column overlaps the page's table of contents without scrolling
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const right = article ? article.getBoundingClientRect().right : doc.clientWidth;
  const wide = [];
  for (const el of (article ? article.querySelectorAll('table, img, pre, svg, .math') : [])) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > right + 2) {
      wide.push((el.tagName + '.' + (el.className.baseVal ?? el.className ?? '')).slice(0, 60) + ' +' + Math.round(r.right - right) + 'px');
    }
  }
  const broken = [...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src);
  const pending = [...document.images].filter(i => !i.complete).map(i => i.src);
  return {docOverflow: doc.scrollWidth - doc.clientWidth, boxes, wide, broken, pending};
}"""


def find_chromium(explicit: str | None) -> str:
    for candidate in (
        explicit,
        os.environ.get("CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("no Chromium found: install it (Debian: apt-get install chromium) or pass --chromium PATH")


def check(build: Path, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    pages = sorted(
        p
        for p in build.rglob("*.html")
        if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts
    )
    if not pages:
        raise SystemExit(f"no HTML pages under {build}: build the book first (make book-only)")
    problems: list[str] = []
    offline: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        for path in pages:
            page = context.new_page()
            errors: list[tuple[str, str]] = []  # (message, URL it names)
            external: set[str] = set()
            local_failed: list[str] = []

            def on_console(msg, errors=errors):
                if msg.type == "error":
                    errors.append((msg.text, (msg.location or {}).get("url", "")))

            def on_failed(req, external=external, local_failed=local_failed):
                (external.add if req.url.startswith(("http://", "https://")) else local_failed.append)(req.url)

            page.on("console", on_console)
            page.on("pageerror", lambda exc, errors=errors: errors.append((str(exc), "")))
            page.on("requestfailed", on_failed)
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(1000)  # late layout and late scripts (MathJax, fonts)
            m = page.evaluate(MEASURE)
            name = str(path.relative_to(build))
            if m["docOverflow"] > 0:
                problems.append(f"{name}: the page scrolls horizontally by {m['docOverflow']} px at {WIDTH} px")
            problems += [f"{name}: scroll box {b}" for b in m["boxes"]]
            problems += [f"{name}: wider than the text column: {w}" for w in m["wide"]]
            problems += [f"{name}: image did not load: {src}" for src in m["broken"] + m["pending"]]
            problems += [f"{name}: local file did not load: {url}" for url in local_failed]
            # an external resource (MathJax from its CDN) cannot load on an offline machine: it is noted,
            # and only the console line that names that very URL is not counted
            offline.update(external)
            problems += [
                f"{name}: console error: {text}"
                for text, url in errors
                if not (url in external and text.startswith("Failed to load resource"))
            ]
            page.close()
        browser.close()
    for url in sorted(offline):
        print(f"note: external resource not reachable from this machine, not checked: {url}")
    print(f"checked {len(pages)} pages at {WIDTH} px in {Path(chromium).name}: {len(problems)} problem(s)")
    return problems


BAD_PAGE = """<html><head><link rel="stylesheet" href="missing.css"></head><body><main>
<div style="width: 3000px">a table too wide for the page</div>
<article class="bd-article" style="width: 400px"><table style="width: 700px"><tr><td>wide</td></tr></table></article>
<div style="width: 300px; overflow-x: auto"><div style="width: 900px">a scroll box</div></div>
<img src="missing.png">
<script>console.error("boom")</script>
</main></body></html>"""


def self_test(chromium: str) -> None:
    """The check must catch each kind of problem on a page made to have all of them."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bad.html").write_text(BAD_PAGE)
        found = check(Path(tmp), chromium)
    kinds = {
        "scrolls horizontally": False,
        "scroll box": False,
        "image did not load": False,
        "console error: boom": False,
        "wider than the text column": False,
        "local file did not load": False,
    }
    for problem in found:
        for kind in kinds:
            kinds[kind] |= kind in problem
    missed = [k for k, seen in kinds.items() if not seen]
    if missed:
        raise SystemExit(f"self-test: the check missed {missed} on a page made to have them")
    print(
        "self-test: a page with a wide block, a scroll box, a table wider than its column, a broken image, a missing "
        "stylesheet and a console error fails the check"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("build", type=Path, help="the built HTML folder (_build/html)")
    ap.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM, then chromium on PATH)")
    ap.add_argument("--no-self-test", action="store_true", help="skip checking the check on a page made to fail")
    args = ap.parse_args()
    chromium = find_chromium(args.chromium)
    if not args.no_self_test:
        self_test(chromium)
    problems = check(args.build, chromium)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
