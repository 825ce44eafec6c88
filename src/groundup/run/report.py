"""The files a training run leaves behind: `metrics.csv`, `per_class.csv`, `summary.json` and a one-page
`report.html`.

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

from groundup.callbacks.tracking import COLUMNS, format_value, table_columns
from groundup.utils.atomic import atomic_write

__all__ = ["METRICS_COLUMNS", "PER_CLASS_COLUMNS", "render_report", "run_facts", "write_metrics_csv",
           "write_per_class_csv", "write_report", "write_summary"]

# metrics.csv: the table's columns, the lr at the end of each epoch and the seconds spent waiting for batches
METRICS_COLUMNS = (*COLUMNS, "lr", "data_seconds")
PER_CLASS_COLUMNS = ("label", "name", "support", "accuracy", "precision", "recall", "f1")


def write_metrics_csv(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One row per epoch with the columns epoch, train_loss, train_acc, valid_loss, valid_acc, seconds, lr,
    data_seconds (with `Learner(metrics=[...])`: the table's columns, `table_columns`, then lr, data_seconds).

    `lr` is the learning rate at the end of the epoch; `data_seconds` the part of `seconds` the loop
    waited for the loader's batches. A value a pass did not produce (e.g. no
    validation) is left empty.
    """
    return _write_csv(history, _metrics_columns(history), path)


def _metrics_columns(history: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """`METRICS_COLUMNS`, or with the learner's own metrics the table's columns, then lr and data_seconds."""
    return (*table_columns(history), "lr", "data_seconds")


def write_per_class_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One row per class (`Interpretation.per_class()`): label, name, support, accuracy, precision, recall,
    f1; a score that is None is left empty."""
    return _write_csv(rows, PER_CLASS_COLUMNS, path)


def _write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_value(row.get(c)) for c in columns})
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
    return Path(path)


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: the csv is data, the table is for reading
    return "" if v is None else v


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `summary` as indented JSON."""
    text = json.dumps(summary, indent=2, default=str) + "\n"
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
.facts td.k { width: 11rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25rem .8rem; text-align: right; }
th { background: #f6f6f6; } td.k { text-align: left; color: #555; } td.v { text-align: left; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 .2rem; }
li.finding { margin: .4rem 0; } li.error b { color: #b00020; } li.warning b { color: #9a5b00; }
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
    return "none" if v is None else str(v)  # never a blank cell


def _metrics_table(history: Sequence[Mapping[str, Any]]) -> str:
    columns = _metrics_columns(history)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for row in history:
        cells = "".join(f"<td>{format_value(c, row.get(c), '–')}</td>" for c in columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _settings_table(settings: Mapping[str, Any], cls: str = "") -> str:
    rows = "".join(f'<tr><td class="k">{html.escape(str(k))}</td><td class="v">{html.escape(_fmt(v))}</td></tr>'
                   for k, v in settings.items())
    return f'<table class="{cls}">{rows}</table>' if cls else f"<table>{rows}</table>"


def _per_class_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = ("name", "label", "support", "accuracy", "precision", "recall", "f1")
    head = "".join(f"<th>{c}</th>" for c in columns)
    cell = lambda v: "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else html.escape(str(v)))
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="per-class"><tr>{head}</tr>{body}</table>'


def _device_text(machine: Mapping[str, Any]) -> str:
    cores = f"{machine.get('cpu_cores_usable')} of {machine.get('cpu_cores')} cores usable"
    cpu = f"CPU: {machine.get('cpu')} ({cores})"
    gpu = machine.get("gpu")
    return f"{machine.get('device')}: {gpu}; {cpu}" if gpu else f"{machine.get('device')}; {cpu}"


def run_facts(summary: Mapping[str, Any]) -> dict[str, str]:
    """The report's header, `{what: text}`: command, device, parameters, processes, lr finder, wall time,
    best epoch.

    Each fact appears when `summary` has it (a training run has them all; `groundup evaluate` fewer).
    """
    facts: dict[str, str] = {}
    if summary.get("command"):
        facts["command"] = summary["command"]
    if summary.get("started"):
        facts["started"] = summary["started"]
    if summary.get("machine"):
        facts["device"] = _device_text(summary["machine"])
    if summary.get("n_params") is not None:
        facts["parameters"] = f"{summary['n_params']:,}"
    if summary.get("world_size") is not None:
        world = summary["world_size"]
        how = "one process" if world == 1 else f"{world} processes (torchrun)"
        facts["world size"] = f"{world}: {how}; global batch {summary.get('global_batch')}"
    if "lr_finder" in summary:
        found, lr = summary["lr_finder"], (summary.get("config") or {}).get("lr")
        facts["lr finder"] = (f"suggested lr {lr:.3g} ({found.get('how', found['method'])}), used for training"
                              if found else f"not run (--lr {_fmt(lr)} given)")
    init = summary.get("init")
    if init:
        how = (f"; kept {init['kept']} tensors, made {init['made']} new (a new head)" if init.get("new_head")
               else f"; all {init['kept']} tensors" if "kept" in init else "")
        frozen = init.get("frozen")
        facts["started from"] = init["from"] + how + (
            f"; then the head alone: valid_acc {frozen['valid_acc']:.4f}" if frozen and "valid_acc" in frozen else "")
    if summary.get("wall_seconds") is not None:
        text = f"{summary['wall_seconds']:.1f} s in all"
        per_epoch = summary.get("epoch_seconds") or []
        if per_epoch:
            mean = sum(per_epoch) / len(per_epoch)
            text += (f"; per epoch {mean:.1f} s on average (min {min(per_epoch):.1f}, "
                     f"max {max(per_epoch):.1f}, {len(per_epoch)} epochs)")
        facts["wall time"] = text
    best = summary.get("best")
    if best and summary.get("best_rule"):
        key = summary.get("best_by", "valid_loss")
        value = f" ({key} {best[key]:.4f})" if isinstance(best.get(key), float) else ""
        facts["best epoch"] = f"{best.get('epoch')}{value}; {summary['best_rule']}"
    return facts


def _diagnosis_section(summary: Mapping[str, Any], plots: Mapping[str, str | os.PathLike]) -> str:
    """The doctor's findings, worst first, with the images they list (see `groundup.run.doctor`)."""
    rows = []
    for f in summary.get("diagnosis") or []:
        items = "".join(f"<li><code>{html.escape(', '.join(f'{k} {v}' for k, v in it.items()))}</code></li>"
                        for it in f.get("items", []))
        rows.append(f'<li class="finding {html.escape(f["severity"])}"><b>{html.escape(f["severity"])}: '
                    f'{html.escape(f["name"])}</b>: {html.escape(f["evidence"])}<br>try: '
                    f'<code>{html.escape(f["action"])}</code>{f"<ul>{items}</ul>" if items else ""}</li>')
    notes = summary.get("diagnosis_notes") or {}
    body = f"<ul>{''.join(rows)}</ul>" if rows else "<p>No problems found.</p>"
    missed = "".join(f"<li>{html.escape(w)}</li>" for w in notes.get("not_checked", []))
    if missed:
        body += f"<p>Not checked:</p><ul>{missed}</ul>"
    if notes.get("seconds") is not None:
        body += f'<p class="sub">The checks took {notes["seconds"]:.2f} s.</p>'
    body += "".join(f'<figure><img alt="{html.escape(name)}" src="{_data_uri(p)}"><figcaption>'
                    f"{html.escape(name)}</figcaption></figure>" for name, p in plots.items() if Path(p).is_file())
    return f'<h2 id="diagnosis">Diagnosis</h2>\n{body}'


def render_report(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                  plots: Mapping[str, str | os.PathLike], title: str = "groundup training run",
                  diagnosis_plots: Mapping[str, str | os.PathLike] | None = None) -> str:
    """The report page as a string (see `write_report`); plots that do not exist are left out.

    A summary with a `diagnosis` (a training run's) shows it first, with `diagnosis_plots` (the
    images its findings list)."""
    final = summary.get("final") or (history[-1] if history else {})
    cards = []
    for key, label in (("valid_acc", "valid accuracy"), ("valid_loss", "valid loss"),
                       ("train_loss", "train loss")):
        if final.get(key) is not None:
            cards.append(f'<div class="card">{label}<b>{final[key]:.4f}</b></div>')
    for label, value in (summary.get("metrics") or {}).items():  # `groundup evaluate`'s loss and accuracy
        cards.append(f'<div class="card">{html.escape(label)}<b>{value:.4f}</b></div>')
    if summary.get("best") and summary.get("best_rule"):
        cards.append(f'<div class="card">best epoch<b>{summary["best"].get("epoch")}</b></div>')
    if summary.get("wall_seconds") is not None:
        cards.append(f'<div class="card">wall time<b>{summary["wall_seconds"]:.1f} s</b></div>')
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="{_data_uri(p)}"><figcaption>{html.escape(name)}'
        f"</figcaption></figure>" for name, p in plots.items() if Path(p).is_file())
    settings = dict(summary.get("settings") or summary.get("config") or {})
    for key in ("data_path", "n_train", "n_valid", "vocab", "class_names", "resumed_from"):
        if summary.get(key) is not None:
            settings[key] = summary[key]
    sections = []
    if "diagnosis" in summary:
        sections.append(_diagnosis_section(summary, diagnosis_plots or {}))
    facts = run_facts(summary)
    if facts:
        sections.append(f'<h2 id="run">Run</h2>\n{_settings_table(facts, "facts")}')
    if history:
        sections.append(f'<h2 id="metrics">Per-epoch metrics</h2>\n{_metrics_table(history)}')
    if summary.get("per_class"):
        note = html.escape(summary.get("per_class_note", ""))
        confused = "; ".join(f"{html.escape(a)} → {html.escape(p)}: {n}"
                             for a, p, n in (summary.get("most_confused") or [])[:10])
        heading = "Per-tag results" if summary.get("multi_label") else "Per-class results"
        sections.append(f'<h2 id="per-class">{heading}</h2>\n<p class="sub">{note}</p>\n'
                        f'{_per_class_table(summary["per_class"])}'
                        + (f"<p>Most confused (actual → predicted: count): {confused}</p>"
                           if confused else ""))
    versions = summary.get("versions") or {}
    config = summary.get("config") or {}
    sub = html.escape(summary.get("subtitle")
                      or f"{config.get('arch', '')} · {config.get('epochs', len(history))} epochs · "
                         f"lr {_fmt(config.get('lr'))} · {config.get('schedule', '')}")
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
{chr(10).join(sections)}
<h2 id="plots">Plots</h2>
{figures or '<p>No plots.</p>'}
<h2 id="settings">Settings</h2>
{_settings_table(settings)}
<h2 id="versions">Versions</h2>
{_settings_table(versions)}
</body>
</html>
"""


def write_report(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                 plots: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                 title: str = "groundup training run",
                 diagnosis_plots: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Write the self-contained report page to `path` and return it.

    Like every `write_*` here, what is written comes first and the file last.

    Args:
        summary: what `summary.json` holds (final metrics, wall time, `config`, versions, ...).
        history: `learn.history`: one dict per epoch.
        plots: `{caption: PNG file}`; each PNG is embedded as a base64 data URI.
        path: the HTML file to write.
        title: the page's heading.
        diagnosis_plots: `{caption: PNG file}` shown with the diagnosis (e.g. `label_errors.png`).
    """
    page = render_report(summary, history, plots, title, diagnosis_plots)
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(page)
    return Path(path)
