"""Load every page of the built book in a real (headless) Chromium and check what a reader sees, on a
laptop and on a phone.

For each ``*.html`` page under the build folder (search and genindex pages excepted):

At a 1280 x 800 window: the page must not scroll horizontally (document width <= window width; a
wide table or figure inside its own scrolling box is allowed only if it needs no more than 2 px to
scroll), no table, image, code block or formula may reach past the text column (it would overlap the
table of contents), every ``<img>`` and every local file the page requests must load, and the
browser console must show no errors (nor uncaught page errors), one second after load. Every image
in the article must have alt text that is neither empty nor a file name, and must be a figure made by
``textnorm.plots`` (``figure_png`` stores the figure's smallest font in pixels in a PNG text chunk,
``textnorm.plots.MIN_FONT_KEY``): its smallest text as shown, the stored size times the shown width
over the PNG's own width, must be at least 9 px. Each page's smallest figure text is printed, and
the book's.

At a 390 x 844 window (a phone): the document must not scroll horizontally (a table, formula or code
block may scroll inside its own box), images and local files must load, the console must show no
errors, clicking the navigation toggle must show the chapter links, and on a page with a table of
contents clicking the contents toggle must show its links.

Offline (as in CI) MathJax cannot load from its CDN, so formulas stay raw TeX and their rendered
width is not checked unless ``--mathjax DIR`` serves a local MathJax 3 in its place. External
resources that cannot be reached are listed as notes, not failures. Prints one line per page (pass or
fail, smallest figure text) and one per problem, and exits 1 if any page fails.

    python book/check_pages.py _build/html                       # Chromium from $CHROMIUM or PATH
    python book/check_pages.py _build/html --chromium /usr/bin/chromium
    python book/check_pages.py _build/html --screenshots shots   # full-page PNGs of chosen pages
    python book/check_pages.py _build/html --mathjax node_modules/mathjax   # formulas measured offline

Needs the ``playwright`` Python package and a Chromium executable (Debian: ``apt-get install
chromium``); Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

WIDE = (1280, 800)
PHONE = (390, 844)
MIN_FIGURE_TEXT_PX = 9.0
SKIP = {"search.html", "genindex.html", "py-modindex.html"}
SCREENSHOT_PAGES = ("intro.html", "03_overoptimization.html")  # the first page and the overoptimization chapter
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
IMAGE_NAME = re.compile(r"\S*\.(png|jpe?g|gif|svg|webp)", re.IGNORECASE)

# horizontal overflow of the document, and of any element that scrolls horizontally by itself
MEASURE = """() => {
  const doc = document.documentElement;
  const boxes = [];
  for (const el of document.querySelectorAll('main *')) {
    if (el.closest('div.cell_input')) continue;  // a code cell's source scrolls in its own box: lines and indentation kept
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
  // the widest element that sticks out of the window, to say what makes the page scroll sideways
  let culprit = '', most = 0;
  for (const el of document.querySelectorAll('main *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right - doc.clientWidth > most) {
      let p = el.parentElement, clipped = false;
      for (; p; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== 'visible') { clipped = true; break; }
      }
      if (!clipped) {
        most = r.right - doc.clientWidth;
        culprit = (el.tagName + '.' + (el.className.baseVal ?? el.className ?? '')).slice(0, 50)
          + ' "' + (el.textContent || '').trim().slice(0, 40) + '"';
      }
    }
  }
  const broken = [...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src);
  const pending = [...document.images].filter(i => !i.complete).map(i => i.src);
  return {docOverflow: doc.scrollWidth - doc.clientWidth, boxes, wide, broken, pending, culprit};
}"""

# every image in the article: where it comes from, its alt text, its own width and its shown width
FIGURES = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  return [...article.querySelectorAll('img')].map(i => ({
    src: i.currentSrc || i.src, alt: i.getAttribute('alt'), natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width}));
}"""

# how many of the links a selector finds a reader can see: inside the window's width, not hidden, and
# (for those inside the window's height) the element under their centre
VISIBLE_LINKS = """(selector) => {
  const links = [...document.querySelectorAll(selector)];
  let shown = 0, onTop = 0;
  for (const a of links) {
    const r = a.getBoundingClientRect();
    const s = getComputedStyle(a);
    if (r.width < 1 || r.height < 1 || r.left < -1 || r.right > innerWidth + 1 || s.visibility === 'hidden') continue;
    let opaque = true;
    for (let e = a; e; e = e.parentElement) if (parseFloat(getComputedStyle(e).opacity) === 0) opaque = false;
    if (!opaque) continue;
    shown++;
    const y = r.top + r.height / 2;
    if (y > 0 && y < innerHeight) {
      const hit = document.elementFromPoint(r.left + Math.min(r.width / 2, 20), y);
      if (hit && (hit === a || a.contains(hit) || hit.contains(a))) onTop++;
    }
  }
  return {total: links.length, shown, onTop};
}"""

NAV_LINKS = "nav.bd-docs-nav li.toctree-l1 > a"  # the chapter links of the navigation (primary) sidebar
TOC_LINKS = "nav.page-toc > ul > li > a"  # the page's sections in its contents (secondary sidebar), not subsections


@dataclass
class PageResult:
    name: str
    problems: list[str] = field(default_factory=list)
    smallest_text: float | None = None  # px, the page's smallest figure text as shown at 1280 px
    smallest_figure: str = ""
    measured: int = 0  # figures with font metadata


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


def _min_font_reader():
    """textnorm.plots.png_min_font_px, from the repository this file is in when textnorm is not installed."""
    try:
        from textnorm.plots import png_min_font_px
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from textnorm.plots import png_min_font_px
    return png_min_font_px


def image_bytes(src: str) -> bytes | None:
    """The bytes of a file:// or data: image URL; None for any other (an image from outside the book)."""
    url = urlparse(src)
    if url.scheme == "file":
        path = Path(unquote(url.path))
        return path.read_bytes() if path.is_file() else None
    if url.scheme == "data" and ";base64," in src:
        return base64.b64decode(src.split(";base64,", 1)[1])
    return None


def alt_problem(alt: str | None, src: str) -> str | None:
    """Why an image's alt text tells a reader nothing (None when it is fine): missing, empty, or a
    file name (myst-nb's default is the image's path, a hash with .png)."""
    if alt is None or not alt.strip():
        return "image without alt text"
    text = alt.strip()
    name = PurePosixPath(unquote(urlparse(src).path)).name
    if IMAGE_NAME.fullmatch(text) or text == name or PurePosixPath(text).name == name:
        return f"alt text is a file name ({text[:40]})"
    return None


def figure_text_px(stored: float, natural: float, shown: float) -> float:
    """The smallest text as a reader sees it: the PNG's smallest font in its own pixels, scaled by the
    width the image is shown at over its own width."""
    return stored * shown / natural


def _check_figures(page, result: PageResult, read_min_font) -> None:
    for img in page.evaluate(FIGURES):
        src, label = img["src"], PurePosixPath(urlparse(img["src"]).path).name[:24] or img["src"][:40]
        why = alt_problem(img["alt"], src)
        if why:
            result.problems.append(f"{why}: {label}")
        if urlparse(src).scheme == "file" and not Path(unquote(urlparse(src).path)).is_file():
            continue  # a local image that does not exist: the load check names it
        data = image_bytes(src)
        if data is None:
            result.problems.append(f"figure from outside the book, its text cannot be measured: {src[:80]}")
            continue
        try:
            stored = read_min_font(data)
        except (OSError, AttributeError, ValueError):  # not a PNG (an SVG, a JPEG): no text chunk to read
            stored = None
        if stored is None:
            result.problems.append(f"figure without font metadata: made without textnorm.plots.show ({label})")
            continue
        if not img["natural"] or img["shown"] < 1:
            continue  # not shown at load (a folded output): nothing a reader sees yet; the load check covers it
        px = figure_text_px(stored, img["natural"], img["shown"])
        result.measured += 1
        if result.smallest_text is None or px < result.smallest_text:
            result.smallest_text, result.smallest_figure = px, label
        if px < MIN_FIGURE_TEXT_PX:
            result.problems.append(
                f"figure text {px:.1f} px < {MIN_FIGURE_TEXT_PX:g} px at {WIDE[0]} px ({label}: "
                f"{stored:g} px in a {img['natural']} px wide PNG shown {img['shown']:.0f} px wide)"
            )


def _check_toggle(page, button: str, links: str, what: str, width: int) -> str | None:
    """Click the first visible ``button``; a problem unless every link ``links`` finds is then shown
    and at least one is on top and inside the window."""
    toggles = page.locator(f"{button}:visible")
    if toggles.count() == 0:
        return f"no {what} toggle at {width} px"
    toggles.first.click()
    page.wait_for_timeout(500)
    seen = page.evaluate(VISIBLE_LINKS, links)
    if seen["total"] == 0 or seen["shown"] < seen["total"] or seen["onTop"] == 0:
        return (
            f"clicking the {what} toggle at {width} px shows {seen['shown']} of {seen['total']} links "
            f"({seen['onTop']} on top inside the window)"
        )
    return None


def _wants_shot(name: str, chosen: tuple[str, ...]) -> bool:
    return any(name == c or name.endswith("/" + c) for c in chosen)


def check(
    build: Path,
    chromium: str,
    screenshots: Path | None = None,
    shoot: tuple[str, ...] = SCREENSHOT_PAGES,
    mathjax: Path | None = None,
    quiet: bool = False,
) -> list[PageResult]:
    from playwright.sync_api import sync_playwright

    pages = sorted(
        p
        for p in build.rglob("*.html")
        if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts
    )
    if not pages:
        raise SystemExit(f"no HTML pages under {build}: build the book first (make book-only)")
    read_min_font = _min_font_reader()
    results = {str(p.relative_to(build)): PageResult(str(p.relative_to(build))) for p in pages}
    offline: set[str] = set()
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
        missing = [c for c in shoot if not any(_wants_shot(n, (c,)) for n in results)]
        if missing:
            raise SystemExit(f"--screenshot-page: no page named {missing} under {build}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for width, height in (WIDE, PHONE):
            context = browser.new_context(viewport={"width": width, "height": height})
            if mathjax is not None:
                context.route(
                    MATHJAX_CDN + "**",
                    lambda route: route.fulfill(path=str(mathjax / route.request.url[len(MATHJAX_CDN) :])),
                )
            for path in pages:
                name = str(path.relative_to(build))
                result = results[name]
                page, errors, external, local_failed = _open(context, path)
                m = page.evaluate(MEASURE)
                if m["docOverflow"] > 0:
                    result.problems.append(
                        f"the page scrolls horizontally by {m['docOverflow']} px at {width} px (widest: {m['culprit']})"
                    )
                if width == WIDE[0]:
                    result.problems.extend(f"scroll box {b}" for b in m["boxes"])
                    result.problems.extend(f"wider than the text column: {w}" for w in m["wide"])
                    _check_figures(page, result, read_min_font)
                result.problems.extend(f"image did not load: {src}" for src in m["broken"] + m["pending"])
                result.problems.extend(f"local file did not load: {url}" for url in local_failed)
                if screenshots is not None and _wants_shot(name, shoot):
                    shot = screenshots / f"{name.removesuffix('.html').replace('/', '_')}-{width}px.png"
                    page.screenshot(path=str(shot), full_page=True)
                if width == PHONE[0]:
                    nav = _check_toggle(page, "button.primary-toggle", NAV_LINKS, "navigation", width)
                    result.problems += [nav] if nav else []
                    if page.evaluate(f"document.querySelectorAll({TOC_LINKS!r}).length") > 0:
                        page.reload(wait_until="load")  # the navigation drawer closed
                        page.wait_for_timeout(500)
                        toc = _check_toggle(page, "button.secondary-toggle", TOC_LINKS, "contents", width)
                        result.problems += [toc] if toc else []
                # an external resource (MathJax from its CDN) cannot load on an offline machine: it is noted,
                # and only the console line that names that very URL is not counted
                offline.update(external)
                result.problems.extend(
                    f"console error at {width} px: {text}"
                    for text, url in errors
                    if not (url in external and text.startswith("Failed to load resource"))
                )
                page.close()
            context.close()
        browser.close()
    for result in results.values():  # a file that fails to load fails at both widths: say it once
        result.problems = list(dict.fromkeys(result.problems))
    if not quiet:
        _report(list(results.values()), offline, len(pages), Path(chromium).name, screenshots)
    return list(results.values())


def _open(context, path: Path):
    """The page loaded, with the console errors, unreachable external URLs and failed local files seen."""
    page = context.new_page()
    errors: list[tuple[str, str]] = []  # (message, URL it names)
    external: set[str] = set()
    local_failed: list[str] = []

    def on_console(msg):
        if msg.type == "error":
            errors.append((msg.text, (msg.location or {}).get("url", "")))

    def on_failed(req):
        (external.add if req.url.startswith(("http://", "https://")) else local_failed.append)(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append((str(exc), "")))
    page.on("requestfailed", on_failed)
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(1000)  # late layout and late scripts (MathJax, fonts)
    return page, errors, external, local_failed


def _report(results: list[PageResult], offline: set[str], n: int, browser: str, screenshots: Path | None) -> None:
    for url in sorted(offline):
        print(f"note: external resource not reachable from this machine, not checked: {url}")
    for r in results:
        text = (
            f"smallest figure text {r.smallest_text:.1f} px ({r.measured} measured)"
            if r.smallest_text is not None
            else "no figure text measured"
        )
        print(f"{'FAIL' if r.problems else 'pass'} {r.name}: {len(r.problems)} problem(s); {text}")
        for p in r.problems:
            print(f"    {p}")
    measured = [r for r in results if r.smallest_text is not None]
    if measured:
        low = min(measured, key=lambda r: r.smallest_text)
        print(
            f"smallest figure text in the book: {low.smallest_text:.1f} px at {WIDE[0]} px "
            f"({low.name}, {low.smallest_figure}); the floor is {MIN_FIGURE_TEXT_PX:g} px"
        )
    else:
        print("smallest figure text in the book: none measured (no figure carries font metadata)")
    failed = sum(bool(r.problems) for r in results)
    print(
        f"checked {n} pages at {WIDE[0]} and {PHONE[0]} px in {browser}: {failed} failed, "
        f"{sum(len(r.problems) for r in results)} problem(s)"
    )
    if screenshots is not None:
        print(f"screenshots: {screenshots}")


BAD_PAGE = """<html><head><link rel="stylesheet" href="missing.css"></head><body><main>
<div style="width: 3000px">a table too wide for the page</div>
<article class="bd-article" style="width: 400px"><table style="width: 700px"><tr><td>wide</td></tr></table>
<img src="missing.png">
<img src="plain.png" alt="plain.png">
<img src="small.png" alt="A figure shown at half its size" style="width: 100px">
</article>
<div style="width: 300px; overflow-x: auto"><div style="width: 900px">a scroll box</div></div>
<script>console.error("boom")</script>
</main></body></html>"""

# what a phone-ready page looks like to the check: toggles that open drawers, a figure made by textnorm.plots
GOOD_PAGE = """<html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { margin: 0; font-family: sans-serif; } #nav, #toc { display: none; } .open { display: block !important; }
  @media (min-width: 800px) { #nav, #toc { display: block; } button { display: none; } }
</style></head><body>
<button class="primary-toggle" onclick="document.getElementById('nav').classList.toggle('open')">menu</button>
<button class="secondary-toggle" onclick="document.getElementById('toc').classList.toggle('open')">contents</button>
<nav id="nav" class="bd-docs-nav"><ul><li class="toctree-l1"><a href="#a">Chapter one</a></li>
<li class="toctree-l1"><a href="#b">Two</a></li></ul></nav>
<main><nav id="toc" class="page-toc"><ul><li><a href="#s">A section</a></li></ul></nav>
<article class="bd-article"><p>Some text.</p><img src="fig.png" alt="A line rising from left to right" style="max-width: 100%"></article>
</main></body></html>"""


def _figure(path: Path, fontsize: float, inches: float) -> None:
    """A PNG made by textnorm.plots.figure_png, its smallest font ``fontsize`` points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from textnorm.plots import figure_png
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from textnorm.plots import figure_png

    fig, ax = plt.subplots(figsize=(inches, inches * 0.6))
    ax.plot([0, 1], [0, 1])
    ax.set_title("a line", fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    path.write_bytes(figure_png(fig))
    plt.close(fig)


def self_test(chromium: str) -> None:
    """The check must catch each kind of problem on a page made to have all of them, and pass a page
    made to have none."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        bad, good = Path(tmp) / "bad", Path(tmp) / "good"
        bad.mkdir()
        good.mkdir()
        (bad / "bad.html").write_text(BAD_PAGE)
        _figure(bad / "small.png", fontsize=9, inches=4)  # 12.5 px in a ~400 px PNG shown 100 px wide: ~3 px
        from PIL import Image

        Image.new("RGB", (40, 20), "white").save(bad / "plain.png")  # no font metadata
        (good / "good.html").write_text(GOOD_PAGE)
        _figure(good / "fig.png", fontsize=11, inches=3)
        found = [p for r in check(Path(bad), chromium, quiet=True) for p in r.problems]
        clean = [p for r in check(Path(good), chromium, quiet=True) for p in r.problems]
    kinds = {
        "scrolls horizontally by": False,
        "scroll box": False,
        "image did not load": False,
        "console error at 1280 px: boom": False,
        "console error at 390 px: boom": False,
        "wider than the text column": False,
        "local file did not load": False,
        "alt text is a file name": False,
        "image without alt text": False,
        "figure without font metadata": False,
        "figure text": False,
        "no navigation toggle at 390 px": False,
    }
    for problem in found:
        for kind in kinds:
            kinds[kind] |= problem.startswith(kind) or kind in problem
    missed = [k for k, seen in kinds.items() if not seen]
    if missed:
        raise SystemExit(f"self-test: the check missed {missed} on a page made to have them")
    if clean:
        raise SystemExit(f"self-test: the check failed a page made to pass: {clean}")
    print(
        "self-test: a page with a wide block, a scroll box, a table wider than its column, a broken image, a missing "
        "stylesheet, a console error, images without alt text or font metadata, a figure with small text and no "
        "navigation toggle fails the check; a page with working drawers and a readable figure passes"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("build", type=Path, help="the built HTML folder (_build/html)")
    ap.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM, then chromium on PATH)")
    ap.add_argument("--no-self-test", action="store_true", help="skip checking the check on pages made to fail/pass")
    ap.add_argument(
        "--screenshots", type=Path, metavar="DIR", help="write full-page PNGs of the chosen pages at both widths"
    )
    ap.add_argument(
        "--screenshot-page",
        action="append",
        metavar="NAME",
        help=f"a page to screenshot, by file name or path under the build (repeatable; default: {SCREENSHOT_PAGES})",
    )
    ap.add_argument(
        "--mathjax",
        type=Path,
        default=os.environ.get("MATHJAX_DIR") or None,
        metavar="DIR",
        help="a local MathJax 3 (the folder holding es5/), served in place of its CDN so formulas are measured "
        "(default: $MATHJAX_DIR)",
    )
    args = ap.parse_args()
    chromium = find_chromium(args.chromium)
    if args.mathjax is not None and not (args.mathjax / "es5" / "tex-mml-chtml.js").is_file():
        raise SystemExit(f"--mathjax {args.mathjax}: no es5/tex-mml-chtml.js there (npm pack mathjax@3 holds one)")
    if not args.no_self_test:
        self_test(chromium)
    shoot = tuple(args.screenshot_page) if args.screenshot_page else SCREENSHOT_PAGES
    results = check(args.build, chromium, args.screenshots, shoot, args.mathjax)
    sys.exit(1 if any(r.problems for r in results) else 0)


if __name__ == "__main__":
    main()
