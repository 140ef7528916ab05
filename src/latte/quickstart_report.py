"""The quickstart's Markdown report: what was trained, the numbers against the bars, GIFs and the loss curve."""
from __future__ import annotations

import json
from pathlib import Path

from latte.io import atomic_write_text

BARS = {"accuracy_train": 0.95, "accuracy_heldout": 0.80, "fvd_ratio": 1.0,
        # the stricter count: the clip classifier right and the asked colour and shape in every frame
        "every_frame_train": 0.95, "every_frame_heldout": 0.80}


def plot_losses(losses_path: Path, out: Path) -> Path | None:
    if not losses_path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in losses_path.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key in ("loss", "mse"):
        values = [r[key] for r in rows]
        window = max(1, len(values) // 40)
        smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, label=key)
    ax.set_xlabel("optimizer step")
    ax.set_yscale("log")
    ax.set_title("training loss (moving average)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _temporal_row(label: str, ev: dict, key: str) -> str:
    """A table row comparing a temporal figure of the generated videos with the real clips' (no bar)."""
    gen, real = ev["temporal_generated"][key], ev["temporal_real"][key]
    return f"| {label}, generated / real | {gen:.4f} / {real:.4f} | no bar: {gen / max(real, 1e-12):.2f}× real |"


def _every_frame_rows(ev: dict) -> list[str]:
    """Rows of the per-frame check (absent from eval results written before it existed)."""
    checks = ev.get("every_frame")
    if not checks:
        return []
    tr, he = checks["train"], checks["heldout"]
    rows = []
    for label, c, bar in (("training", tr, BARS["every_frame_train"]), ("held-out", he, BARS["every_frame_heldout"])):
        rows.append(f"| right in every frame, {label} combinations (classifier right, and the asked colour and "
                    f"shape in each frame) | {c['every_frame_joint']:.1%} (per clip {c['clip_joint']:.1%}) | "
                    f"≥ {bar:.0%}: {_mark(c['every_frame_joint'] >= bar)} |")
    rows.append(f"| videos whose colour or shape changes between frames, training / held-out | "
                f"{tr['flicker']:.1%} / {he['flicker']:.1%} (colour {tr['color_flicker']:.1%} / "
                f"{he['color_flicker']:.1%}, shape {tr['shape_flicker']:.1%} / {he['shape_flicker']:.1%}) | no bar |")
    if "real" in checks:  # the check's own sanity check: real clips must come out right in every frame
        real = checks["real"]
        rows.append(f"| per-frame check on real clips: asked colour / shape in every frame, changing | "
                    f"{real['color_every_frame']:.1%} / {real['shape_every_frame']:.1%}, {real['flicker']:.1%} | "
                    f"should be 100% / 100%, 0% |")
    return rows


def write_report(qs) -> Path:
    """``OUT/report.md`` from the stage results of a :class:`latte.quickstart.Quickstart`."""
    out: Path = qs.out
    stages = {name: qs.stage_result(name) or {} for name in qs.STAGES}
    ev, tr, data = stages["eval"], stages["train"], stages["data"]
    plot = plot_losses(qs.paths["latte"] / "losses.jsonl", out / "loss_curve.png")
    acc_t, acc_h = ev["accuracy_train"], ev["accuracy_heldout"]
    ratio = ev["synthetic_fvd"] / max(ev["synthetic_fvd_real_baseline"], 1e-12)
    total = sum(s.get("seconds", 0.0) for s in stages.values() if s)
    lines = [
        "# latte quickstart report", "",
        f"A text-to-video Latte trained from scratch on this machine in {total / 60:.1f} minutes "
        f"({tr.get('step')} optimizer steps), on {data['train_clips']} procedural clips of "
        f"{data['combinations'] - data['heldout_combinations']} attribute combinations. "
        f"{data['heldout_combinations']} combinations were never shown in training: "
        + ", ".join(f"\"{c}\"" for c in data["heldout"][:6]) + (" ..." if len(data["heldout"]) > 6 else "") + ".",
        "",
        "| measure | value | bar |", "|---|---|---|",
        f"| attribute accuracy, training combinations (all of shape, colour, direction right) | "
        f"{acc_t['joint']:.1%} | ≥ {BARS['accuracy_train']:.0%}: {_mark(acc_t['joint'] >= BARS['accuracy_train'])} |",
        f"| attribute accuracy, held-out combinations | {acc_h['joint']:.1%} | ≥ {BARS['accuracy_heldout']:.0%}: "
        f"{_mark(acc_h['joint'] >= BARS['accuracy_heldout'])} |",
        *_every_frame_rows(ev),
        f"| synthetic FVD (generated vs real) | {ev['synthetic_fvd']:.3f} | ≤ {BARS['fvd_ratio']:g}× baseline: "
        f"{_mark(ratio <= BARS['fvd_ratio'])} ({ratio:.2f}×) |",
        f"| synthetic FVD real-vs-real baseline | {ev['synthetic_fvd_real_baseline']:.3f} | |",
        _temporal_row("temporal consistency: mean frame-to-frame change", ev, "frame_change"),
        _temporal_row("flicker (mean second difference over time)", ev, "flicker"),
        "", "Per attribute: training " + ", ".join(f"{k} {v:.1%}" for k, v in acc_t.items()
                                                   if k not in ("joint", "num_videos"))
        + "; held-out " + ", ".join(f"{k} {v:.1%}" for k, v in acc_h.items() if k not in ("joint", "num_videos"))
        + ".", "",
    ]
    if ev.get("every_frame"):
        lines += ["\"Right in every frame\": each frame is also checked on its own, without a network: the object's "
                  "colour (the most common nearest palette colour of its pixels) and shape (the data's shape that best "
                  "overlaps its silhouette) must be the asked ones in every frame. The clip classifier reads a whole "
                  "clip at once and can call a video whose frames alternate between two colours by its majority "
                  "colour; this count cannot.", ""]
    for name, title in (("train", "Training combinations"), ("heldout", "Held-out combinations")):
        folder = qs.paths["samples"] / f"showcase_{name}"
        lines += [f"## {title}", ""]
        for sidecar in sorted(folder.glob("*.json")):
            meta = json.loads(sidecar.read_text())
            gif = sidecar.with_suffix(".gif")
            lines.append(f"![{meta.get('prompt', '')}]({gif.relative_to(out).as_posix()}) `{meta.get('prompt', '')}`")
            lines.append("")
    if plot:
        lines += ["## Training loss", "", f"![loss curve]({plot.name})", ""]
    lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {qs.TITLES[n]} | {stages[n].get('seconds', 0):.0f} |" for n in qs.STAGES if stages[n]]
    lines += ["", f"Configs of every stage (with the equivalent `latte` commands): `{qs.paths['configs']}`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_report_section(out: Path, name: str, title: str, section: str, begin: str, end: str) -> Path:
    """A section of a quickstart add-on (``--cascade``, ``--extras``): ``OUT/report_<name>.md`` headed ``title``,
    and the same ``section`` (which starts with the ``begin`` marker and ends with ``end``) inside
    ``OUT/report.md``, replacing the one between the markers there (appended when the report has none)."""
    atomic_write_text(out / f"report_{name}.md", f"# {title}\n\n" + section)
    report = out / "report.md"
    text = report.read_text() if report.is_file() else "# latte quickstart report\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(report, text)
    return report
