"""Check the built docs site (`_docs/`) in a real browser: headless Chromium (Debian's package) driven by Playwright.

    python .ci/docs_check.py [--docs _docs] [--chromium /usr/bin/chromium]     # what `make docs-check` runs

Serves `_docs/` on 127.0.0.1 and opens the home page, every chapter page and the API reference. A page fails if
it does not load, shows fewer images than its notebook has figures or a broken one (naturalWidth 0), leaves maths
unrendered (source maths but no MathJax output, or raw `$$`/`\\[` left in the text), logs a console error or a page
error, or requests anything outside 127.0.0.1 (the site must work offline); an API page must document something,
and the search page must find the chapters on the posterior. Saves screenshots `_docs/_screenshots/home.png`,
`01_forward.png` and `01_forward_figure.png` (the chapter at its first figure). Exits non-zero after listing every
problem.
"""
import argparse
import functools
import http.server
import json
import re
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
SCREENSHOTS = {'index': 'home.png', '01_forward': '01_forward.png'}

# What a page reports about itself once MathJax has finished typesetting.
PAGE_STATE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const main = document.querySelector('main') || document.body;
  const imgs = [...main.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const mathSource = document.querySelectorAll('.math').length;           // what Sphinx/myst marks as maths
  const rendered = document.querySelectorAll('mjx-container').length;     // what MathJax produced
  const text = main.innerText;
  return {imgs, mathSource, rendered, rawDisplay: (text.match(/\\$\\$|\\\\\\[|\\\\begin\\{/g) || []).length,
          mathjax: !!(window.MathJax && MathJax.version), title: document.title,
          apiEntries: document.querySelectorAll('dl.py').length,
          h1: (document.querySelector('main h1') || {}).innerText || ''};
}"""


def pages(docs: Path) -> list[str]:
    "The pages to check: the home page, each chapter (from the toc), the API index."
    toc = (ROOT / '.ci' / 'docs' / '_toc.yml').read_text()
    names = re.findall(r'^\s*-?\s*(?:file|root):\s*(\S+)', toc, re.M)
    return [n for n in names] + [p.relative_to(docs).with_suffix('').as_posix() for p in sorted((docs / 'api').glob('sr3lit.*.html'))]


def figures_in_notebook(name: str) -> int:
    "The figures (PNG outputs) of the staged copy of a chapter that `make docs` built the page from (0 if none)."
    staged = ROOT / '_docs_src' / f'{name}.ipynb'
    if not staged.is_file(): return 0
    cells = json.loads(staged.read_text())['cells']
    return sum('image/png' in o.get('data', {}) for c in cells for o in c.get('outputs', [])
               if 'remove-output' not in c.get('metadata', {}).get('tags', []))


def serve(docs: Path):
    "A quiet HTTP server for `docs` on a free port of 127.0.0.1; returns (server, base URL)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(docs)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}'


def check_page(ctx, base: str, name: str, shots: Path) -> list[str]:
    "Open one page in a new tab of browser context `ctx`; return its problems."
    problems, page = [], ctx.new_page()
    page.on('console', lambda m: m.type == 'error' and problems.append(f'console error: {m.text[:200]}'))
    page.on('pageerror', lambda e: problems.append(f'page error: {str(e)[:200]}'))
    page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url} ({r.failure})'))
    def outside(route):
        problems.append(f'request outside the site: {route.request.url}')
        route.abort()
    page.route(lambda url: urlparse(url).hostname not in ('127.0.0.1', None), outside)
    resp = page.goto(f'{base}/{name}.html', wait_until='load', timeout=60_000)
    if resp is None or resp.status != 200:
        page.close(); return [f'did not load (HTTP {resp.status if resp else "no response"})']
    s = page.evaluate(PAGE_STATE)
    page.wait_for_timeout(300)                   # late console errors and requests
    broken = [i['src'] for i in s['imgs'] if not i['ok']]
    if (n_figures := figures_in_notebook(name)) > len(s['imgs']):
        problems.append(f"{n_figures} figures in the notebook, {len(s['imgs'])} images on the page")
    if broken: problems.append(f'{len(broken)} broken image(s): {broken[:3]}')
    if s['mathSource'] and not s['mathjax']: problems.append('has maths but MathJax did not load')
    if s['mathSource'] and s['rendered'] < s['mathSource']:
        problems.append(f"maths not rendered: {s['rendered']} MathJax outputs for {s['mathSource']} formulas")
    if s['rawDisplay']: problems.append(f"{s['rawDisplay']} raw maths delimiter(s) ($$, \\[ or \\begin) left in the text")
    if name.startswith('api/sr3lit.') and not s['apiEntries']: problems.append('API page documents nothing (autodoc import failed?)')
    if name in SCREENSHOTS:
        page.screenshot(path=str(shots / SCREENSHOTS[name]), full_page=False)
        if s['imgs'] and name != 'index':        # and the chapter's first figure with the text around it
            page.locator('main img').first.scroll_into_view_if_needed()
            page.mouse.wheel(0, -150); page.wait_for_timeout(300)
            page.screenshot(path=str(shots / SCREENSHOTS[name].replace('.png', '_figure.png')), full_page=False)
    page.close()
    print(f"{'ok  ' if not problems else 'FAIL'} {name:32s} {len(s['imgs']):3d} images, {s['rendered']:4d} formulas  "
          f"{s['h1'][:50]!r}", flush=True)
    for p in problems: print(f'       {p}', flush=True)
    return problems


def check_search(ctx, base: str, query: str = 'posterior') -> list[str]:
    "The site's search page finds the chapters that hold `query` (Sphinx's offline index, searchindex.js)."
    page, problems = ctx.new_page(), []
    page.on('pageerror', lambda e: problems.append(f'page error: {str(e)[:200]}'))
    page.goto(f'{base}/search.html?q={query}', wait_until='load', timeout=60_000)
    try: page.wait_for_selector('#search-results ul.search li', timeout=60_000)
    except Exception: problems.append(f'search for {query!r} found nothing')
    hits = page.locator('#search-results ul.search li').count()
    page.close()
    print(f"{'ok  ' if not problems else 'FAIL'} {'search: ' + query:32s} {hits} results", flush=True)
    for p in problems: print(f'       {p}', flush=True)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--docs', default=str(ROOT / '_docs'))
    ap.add_argument('--chromium', default='/usr/bin/chromium')
    args = ap.parse_args()
    docs = Path(args.docs)
    if not (docs / 'index.html').is_file(): sys.exit(f'{docs}/index.html is missing: run `make docs` first')
    if not Path(args.chromium).is_file(): sys.exit(f'no Chromium at {args.chromium}: apt-get install chromium')
    shots = docs / '_screenshots'; shots.mkdir(exist_ok=True)
    srv, base = serve(docs)
    failures = {}
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        # a persistent context is how Playwright passes --user-data-dir: a new, empty profile for each run
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=args.chromium, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={'width': 1280, 'height': 900})
        for name in pages(docs):
            probs = check_page(ctx, base, name, shots)
            if probs: failures[name] = probs
        if probs := check_search(ctx, base): failures['search'] = probs
        ctx.close()
    srv.shutdown()
    n = len(pages(docs)) + 1
    print(f"docs-check: {n - len(failures)}/{n} checks pass ({n - 1} pages and the search); screenshots in {shots}")
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
