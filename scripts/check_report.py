#!/usr/bin/env python
"""Open a groundup report.html in headless Chromium and check that the page shows every section.

    python scripts/check_report.py runs/20240501-093000/report.html --screenshot report.png
    python scripts/check_report.py eval/report.html --evaluation      # a `groundup evaluate` report

The checks run on the page as the browser built it, not on the HTML text: a script added to a
temporary copy of the page waits for it to load, then reads what Chromium shows:

- every section heading: Run, Per-epoch metrics (training reports), Per-class results, Plots,
  Settings, Versions;
- every image decoded, with a real size (an embedded PNG that is broken shows as 0 × 0);
- the plots a report must have: the training curves (training reports), the confusion matrix and
  the top losses;
- the header's facts: command, device, parameters, wall time, and for a training run the world
  size, the LR finder and the best epoch with the rule that chose best.pt;
- a row per class in the per-class table, and no blank cell in the Settings.

Prints one line per check and exits with status 1 if any failed (0 otherwise). Needs Chromium
(Debian/Ubuntu: `apt-get install chromium`); the tests call this from tests/test_report_browser.py.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
            "headless_shell")

# Runs in the page once it (and every image) has loaded; leaves its findings as JSON in <pre id="check">.
PROBE = """
<script>
window.addEventListener("load", () => {
  const text = (el) => el ? el.textContent.trim() : null;
  const facts = {};
  for (const row of document.querySelectorAll("table.facts tr")) {
    facts[text(row.cells[0])] = text(row.cells[1]);
  }
  const settings = [...document.querySelectorAll("#settings + table tr")]
    .map(r => [text(r.cells[0]), text(r.cells[1])]);
  const out = {
    title: document.title,
    headings: [...document.querySelectorAll("h2")].map(h => [h.id, text(h)]),
    images: [...document.images].map(img => ({alt: img.alt, width: img.naturalWidth,
                                               height: img.naturalHeight,
                                               shown: img.getBoundingClientRect().width})),
    captions: [...document.querySelectorAll("figcaption")].map(text),
    facts: facts,
    per_class_rows: document.querySelectorAll("table.per-class tr").length - 1,
    settings: settings,
  };
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _run_chromium(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1400",
             "--virtual-time-budget=10000"]
    return subprocess.run([chromium, *flags, *args, url], capture_output=True, text=True, timeout=120,
                          check=False)


def inspect_report(report: str | Path, chromium: str | None = None) -> dict:
    """What Chromium shows of `report`: headings, images (decoded sizes), captions, header facts, tables."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found on PATH; install it (apt-get install chromium)")
    page = Path(report).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "report.html"
        probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        result = _run_chromium(chromium, probe.as_uri(), "--dump-dom")
    found = re.search(r'<pre id="check">(.*?)</pre>', result.stdout, re.DOTALL)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"Chromium did not render {report} (exit status {result.returncode}): "
                           f"{result.stderr.strip()[-500:]}")
    return json.loads(html.unescape(found.group(1)))


def check(shown: dict, evaluation: bool = False) -> list[tuple[str, bool]]:
    """`(check, passed)` for each thing a report must show (see the module docstring)."""
    results = []
    ids = [h[0] for h in shown["headings"]]
    sections = ["run", "per-class", "plots", "settings", "versions"]
    if not evaluation:
        sections.insert(1, "metrics")
    for section in sections:
        results.append((f"section #{section} is shown", section in ids))
    images = shown["images"]
    results.append((f"{len(images)} images, each decoded with a size", bool(images) and all(
        i["width"] > 0 and i["height"] > 0 and i["shown"] > 0 for i in images)))
    captions = " | ".join(shown["captions"]).lower()
    plots = ["confusion matrix", "top"] + ([] if evaluation else ["training loss per batch"])
    for plot in plots:
        results.append((f"a plot captioned '{plot}...'", plot in captions))
    facts = shown["facts"]
    wanted = ["command", "device", "parameters", "wall time"]
    if not evaluation:
        wanted += ["world size", "lr finder", "best epoch"]
    for fact in wanted:
        results.append((f"header fact '{fact}': {facts.get(fact)!r}", bool(facts.get(fact))))
    if not evaluation:
        best = facts.get("best epoch") or ""
        results.append(("the best epoch names the rule that chose best.pt",
                        "best.pt holds the epoch with" in best))
    results.append((f"per-class table with {shown['per_class_rows']} rows", shown["per_class_rows"] > 0))
    blank = [k for k, v in shown["settings"] if not v]
    results.append((f"no blank setting{' (blank: ' + ', '.join(blank) + ')' if blank else ''}",
                    bool(shown["settings"]) and not blank))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="a report.html written by groundup train or groundup evaluate")
    parser.add_argument("--evaluation", action="store_true", help="the report of groundup evaluate")
    parser.add_argument("--screenshot", default=None, help="also write a full-page PNG of the report here")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("check_report: no Chromium on PATH; install it (apt-get install chromium)", file=sys.stderr)
        return 2
    shown = inspect_report(args.report, chromium)
    results = check(shown, evaluation=args.evaluation)
    for name, ok in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}")
    if args.screenshot:
        shot = Path(args.screenshot).resolve()
        _run_chromium(chromium, Path(args.report).resolve().as_uri(), f"--screenshot={shot}",
                      "--window-size=1100,6000")
        print(f"wrote {shot}")
    failed = sum(not ok for _, ok in results)
    print(f"{len(results) - failed} of {len(results)} checks passed in Chromium ({chromium})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
