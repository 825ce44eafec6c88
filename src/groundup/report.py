"""The files a training run leaves behind: `metrics.csv`, `summary.json` and a one-page `report.html`.

The report is a single self-contained HTML file: the per-epoch table, the plots embedded as
base64 `data:` URIs and the run's settings, styled inline. It loads nothing from the network,
so it opens anywhere (a laptop offline, an e-mail attachment, a CI artifact).

Example:
    >>> write_metrics_csv(learn.history, "runs/a/metrics.csv")
    >>> write_report(summary, learn.history, {"Training loss": "runs/a/losses.png"}, "runs/a/report.html")
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from groundup.atomic import atomic_write
from groundup.callbacks.tracking import COLUMNS, format_value
from groundup.deprecation import renamed

__all__ = ["render_report", "write_metrics_csv", "write_report", "write_summary", "write_text_atomic"]


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see `groundup.atomic`): never half a file."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def write_metrics_csv(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One row per epoch with the columns epoch, train_loss, train_acc, valid_loss, valid_acc, seconds.

    A value a pass did not produce (e.g. no validation) is left empty.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({c: _csv_value(row.get(c)) for c in COLUMNS})
    return write_text_atomic(buf.getvalue(), path)


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: the csv is data, the table is for reading
    return "" if v is None else v


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `summary` as indented JSON."""
    return write_text_atomic(json.dumps(summary, indent=2, default=str) + "\n", path)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25rem .8rem; text-align: right; }
th { background: #f6f6f6; } td.k { text-align: left; color: #555; } td.v { text-align: left; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _data_uri(png: str | os.PathLike) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return "" if v is None else str(v)


def _metrics_table(history: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = []
    for row in history:
        cells = "".join(f"<td>{format_value(c, row.get(c), '–')}</td>" for c in COLUMNS)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _settings_table(settings: Mapping[str, Any]) -> str:
    rows = "".join(f'<tr><td class="k">{html.escape(str(k))}</td><td class="v">{html.escape(_fmt(v))}</td></tr>'
                   for k, v in settings.items())
    return f"<table>{rows}</table>"


def render_report(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                  plots: Mapping[str, str | os.PathLike], title: str = "groundup training run") -> str:
    """The report page as a string (see `write_report`); plots that do not exist are left out."""
    final = summary.get("final") or (history[-1] if history else {})
    cards = []
    for key, label in (("valid_acc", "valid accuracy"), ("valid_loss", "valid loss"),
                       ("train_loss", "train loss")):
        if final.get(key) is not None:
            cards.append(f'<div class="card">{label}<b>{final[key]:.4f}</b></div>')
    best, monitor = summary.get("best"), summary.get("monitor")
    if best and monitor and best.get(monitor) is not None:  # the epoch best.pt holds
        cards.append(f'<div class="card">best.pt: epoch {best.get("epoch")}, by {html.escape(monitor)}'
                     f'<b>{best[monitor]:.4f}</b></div>')
    if summary.get("wall_seconds") is not None:
        cards.append(f'<div class="card">wall time<b>{summary["wall_seconds"]:.1f} s</b></div>')
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="{_data_uri(p)}"><figcaption>{html.escape(name)}'
        f"</figcaption></figure>" for name, p in plots.items() if Path(p).is_file())
    settings = dict(summary.get("config") or {})
    for key in ("data_path", "n_train", "n_valid", "vocab", "device", "started", "resumed_from"):
        if summary.get(key) is not None:
            settings[key] = summary[key]
    versions = summary.get("versions") or {}
    sub = html.escape(f"{summary.get('arch', '')} · {summary.get('epochs', len(history))} epochs · "
                      f"lr {_fmt(summary.get('lr'))} · {summary.get('schedule', '')}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">{sub}</p>
<div class="cards">{''.join(cards)}</div>
<h2>Per-epoch metrics</h2>
{_metrics_table(history)}
<h2>Plots</h2>
{figures or '<p>No plots.</p>'}
<h2>Settings</h2>
{_settings_table(settings)}
<h2>Versions</h2>
{_settings_table(versions)}
</body>
</html>
"""


def write_report(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                 plots: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                 title: str = "groundup training run") -> Path:
    """Write the self-contained report page to `path` and return it.

    Like every `write_*` here, what is written comes first and the file last.

    Args:
        summary: what `summary.json` holds (final metrics, wall time, `config`, versions, ...).
        history: `learn.history`: one dict per epoch.
        plots: `{caption: PNG file}`; each PNG is embedded as a base64 data URI.
        path: the HTML file to write.
        title: the page's heading.
    """
    if isinstance(summary, (str, os.PathLike)):  # write_report(path, summary, history, plots) before 0.2
        summary, history, plots, path = renamed("write_report", "write_report(path, summary, history, plots)",
                                                "write_report(summary, history, plots, path)",
                                                (history, plots, path, summary))
    return write_text_atomic(render_report(summary, history, plots, title), path)
