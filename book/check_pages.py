"""Load every page of the built book in a real (headless) Chromium and check what a reader sees.

For each ``*.html`` page under the build folder (search and genindex pages excepted), at a
1280 x 800 window: the page must not scroll horizontally (document width <= window width; a
wide table or figure inside its own scrolling box is allowed only if it needs no more than 2 px
to scroll), every ``<img>`` must have loaded (``naturalWidth > 0``), and the browser console
must show no errors (nor uncaught page errors). External resources that cannot be reached (the
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
    if (el.scrollWidth - el.clientWidth > 2 && getComputedStyle(el).overflowX !== 'visible') {
      boxes.push((el.tagName + '.' + (el.className || '')).slice(0, 60) + ' +' + (el.scrollWidth - el.clientWidth) + 'px');
    }
  }
  const broken = [...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src);
  const pending = [...document.images].filter(i => !i.complete).map(i => i.src);
  return {docOverflow: doc.scrollWidth - doc.clientWidth, boxes, broken, pending};
}"""


def find_chromium(explicit: str | None) -> str:
    for candidate in (explicit, os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("no Chromium found: install it (Debian: apt-get install chromium) or pass --chromium PATH")


def check(build: Path, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    pages = sorted(p for p in build.rglob("*.html") if p.name not in SKIP and "_static" not in p.parts
                   and "_sources" not in p.parts)
    if not pages:
        raise SystemExit(f"no HTML pages under {build}: build the book first (make book-only)")
    problems: list[str] = []
    offline: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        for path in pages:
            page = context.new_page()
            errors: list[str] = []
            external: list[str] = []
            page.on("console", lambda msg, errors=errors: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.on("requestfailed", lambda req, external=external: external.append(req.url)
                    if req.url.startswith(("http://", "https://")) else None)
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(300)   # late layout (MathJax, fonts)
            m = page.evaluate(MEASURE)
            name = str(path.relative_to(build))
            if m["docOverflow"] > 0:
                problems.append(f"{name}: the page scrolls horizontally by {m['docOverflow']} px at {WIDTH} px")
            problems += [f"{name}: scroll box {b}" for b in m["boxes"]]
            problems += [f"{name}: image did not load: {src}" for src in m["broken"] + m["pending"]]
            # an external resource (MathJax from its CDN) cannot load on an offline machine: noted, and its
            # "Failed to load resource" console line is not counted; a local file that fails to load is
            for url in external:
                offline.add(url)
                failed = next((e for e in errors if e.startswith("Failed to load resource: net::")), None)
                if failed is not None:
                    errors.remove(failed)
            problems += [f"{name}: console error: {e}" for e in errors]
            page.close()
        browser.close()
    for url in sorted(offline):
        print(f"note: external resource not reachable from this machine, not checked: {url}")
    print(f"checked {len(pages)} pages at {WIDTH} px in {Path(chromium).name}: {len(problems)} problem(s)")
    return problems


BAD_PAGE = """<html><body><main>
<div style="width: 3000px">a table too wide for the page</div>
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
    kinds = {"scrolls horizontally": False, "scroll box": False, "image did not load": False, "console error: boom": False}
    for problem in found:
        for kind in kinds:
            kinds[kind] |= kind in problem
    missed = [k for k, seen in kinds.items() if not seen]
    if missed:
        raise SystemExit(f"self-test: the check missed {missed} on a page made to have them")
    print("self-test: a page with a wide block, a scroll box, a broken image and a console error fails the check")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
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
