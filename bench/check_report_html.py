"""Open a compare report.html in headless Chromium and check that every image loaded.

    python bench/check_report_html.py runs/compare_synthetic/report.html \
        --screenshot /tmp/report_screenshot.png

A copy of the report with a small checking script appended is written to a
temporary folder (the report itself is not touched); Chromium loads it with
no network access needed (images are ``data:`` URIs), the script counts the
``<img>`` elements whose ``complete && naturalWidth > 0`` and writes the counts
into the DOM, and ``--dump-dom`` hands the DOM back. Prints the counts and
exits 0 only if there is at least one image and every image loaded. Keep the
screenshot outside the repository.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt || '(no alt)'; });
  var out = document.createElement('pre');
  out.id = 'erc-image-check';
  out.textContent = 'ERC_IMAGE_CHECK ' + JSON.stringify({total: imgs.length, loaded: ok.length,
      failed: bad, widths: ok.map(function (i) { return i.naturalWidth; })}) + ' END_CHECK';
  document.body.appendChild(out);
});
</script>
"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_report(html_path: str | Path, screenshot: str | Path | None = None,
                 browser: str | None = None, timeout: float = 120.0) -> dict:
    """Return ``{"total", "loaded", "failed", "widths", "screenshot"}``; raise if Chromium is missing."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found on PATH (Debian: apt-get install -y chromium)")
    html_path = Path(html_path).resolve()
    text = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="erc-report-check-") as tmp:
        tmp = Path(tmp)
        probe = tmp / "report_probe.html"
        probe.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>") if "</body>" in text
                         else text + CHECK_SCRIPT, encoding="utf-8")
        proc = _run(browser, ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                    tmp / "profile-dom", timeout)
        m = re.search(r"ERC_IMAGE_CHECK (\{.*?\}) END_CHECK", proc.stdout, flags=re.S)
        if not m:
            raise RuntimeError(f"Chromium did not run the check (exit {proc.returncode}); "
                               f"stderr tail: {proc.stderr[-800:]}")
        result = json.loads(m.group(1))
        result["screenshot"] = None
        if screenshot:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            _run(browser, ["--hide-scrollbars", "--window-size=1400,4000", f"--screenshot={shot}",
                           html_path.as_uri()], tmp / "profile-shot", timeout)
            result["screenshot"] = str(shot) if shot.is_file() and shot.stat().st_size > 0 else None
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="path of report.html")
    ap.add_argument("--screenshot", default=None, help="PNG to write (keep it out of the repository)")
    ap.add_argument("--browser", default=None, help="Chromium binary (default: found on PATH)")
    args = ap.parse_args(argv)
    res = check_report(args.report, args.screenshot, args.browser)
    print(f"images: {res['loaded']}/{res['total']} loaded; widths {res['widths']}")
    if res["failed"]:
        print(f"failed: {res['failed']}")
    if res["screenshot"]:
        print(f"screenshot: {res['screenshot']}")
    return 0 if res["total"] > 0 and res["loaded"] == res["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
