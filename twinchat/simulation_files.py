"""A strategy test's files: results.json, report.md and chart.png, as `twinchat simulate --out DIR` writes them.

The document comes from ``TwinService.simulate``; matplotlib is loaded only when the chart is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS, REPORT, CHART = "results.json", "report.md", "chart.png"


def write_simulation(document: dict[str, Any], out: Path) -> list[Path]:
    """Write the three files into ``out`` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    results, report, chart_path = out / RESULTS, out / REPORT, out / CHART
    results.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    chart(document, chart_path)
    report.write_text(report_markdown(document, chart=CHART), encoding="utf-8")
    return [results, report, chart_path]


def summary_lines(document: dict[str, Any]) -> list[str]:
    """A few lines for people: each variant's rate and interval, and the A/B difference."""
    twins, campaign = document["twins"], document["campaign"]
    lines = [
        f"campaign {campaign['name']} (simulated): {twins['answered']} twins answered, "
        f"{twins['refused']} refused (no consent for {document['purpose']})"
    ]
    counted = " or ".join(document["response"]["counted"])
    for key, v in document["variants"].items():
        low, high = v["interval"]
        lines.append(f"  {key}: {v['rate']:.1%} {counted} (95% interval {low:.1%} to {high:.1%})")
    c = document.get("comparison")
    if c:
        low, high = c["interval"]
        lines.append(
            f"  {c['b']} - {c['a']}: {c['difference']:+.1%} (95% interval {low:+.1%} to {high:+.1%}), "
            f"P({c['b']} > {c['a']}) {c['p_b_better']:.2f}, two-sided p {c['p_value']:.3f}"
        )
    return lines


def report_markdown(document: dict[str, Any], *, chart: str | None = CHART) -> str:
    campaign, twins = document["campaign"], document["twins"]
    counted = " or ".join(f"“{r}”" for r in document["response"]["counted"])
    out = [
        f"# Strategy test: {campaign['name']}",
        "",
        "**Simulated.** These are digital twins' responses, estimated from each customer's own history: what "
        "they would likely do, not what they did. Check before acting on them.",
        "",
        f"- date: {document['date']}",
        f"- panel: {campaign.get('panel') or '(given twins)'}; channel: {campaign['channel']}",
        f"- twins: {twins['asked']} asked, {twins['answered']} answered, {twins['refused']} refused "
        f"(no consent for {document['purpose']}: left out of every rate)",
        f"- response rate: the mean over twins of each twin's probability of {counted}",
        f"- intervals: {document.get('statistics', {}).get('method', '')}, "
        f"{document.get('statistics', {}).get('draws', '')} draws",
        "",
    ]
    if campaign.get("description"):
        out[1:1] = ["", campaign["description"]]
    out += ["## Variants", "", "| variant | text | price | rate | 95% interval |", "|---|---|---|---|---|"]
    for key, v in document["variants"].items():
        spec = campaign["variants"][key]
        price = f"{spec['price']:.2f}" if spec.get("price") is not None else ""
        low, high = v["interval"]
        out.append(f"| {key} | {spec['text']} | {price} | {v['rate']:.1%} | {low:.1%} to {high:.1%} |")
    c = document.get("comparison")
    if c:
        low, high = c["interval"]
        out += [
            "",
            f"## {c['b']} against {c['a']} (paired: the same twins)",
            "",
            f"Difference {c['b']} - {c['a']}: **{c['difference']:+.1%}** (95% interval {low:+.1%} to "
            f"{high:+.1%}); probability that {c['b']}'s rate is higher: {c['p_b_better']:.2f}; two-sided "
            f"bootstrap p-value for no difference: {c['p_value']:.3f}.",
        ]
    for name, groups in document.get("segments", {}).items():
        keys = list(document["variants"])
        out += ["", f"## By {name.replace('_', ' ')}", ""]
        out.append("| " + name + " | twins | " + " | ".join(keys) + " | difference |")
        out.append("|---" * (len(keys) + 3) + "|")
        for value, g in groups.items():
            rates = " | ".join(
                f"{g['variants'][k]['rate']:.1%} ({g['variants'][k]['interval'][0]:.1%}-"
                f"{g['variants'][k]['interval'][1]:.1%})"
                for k in keys
            )
            out.append(f"| {value} | {g['n']} | {rates} | {g['comparison']['difference']:+.1%} |")
    if chart:
        out += ["", f"![response rate per variant]({chart})"]
    if document.get("refused"):
        out += ["", "## Refused", ""] + [f"- {r['reason']}" for r in document["refused"]]
    out += ["", "## Model", "", "```json", json.dumps(document.get("model", {}), indent=2), "```", ""]
    return "\n".join(out)


def chart(document: dict[str, Any], path: Path) -> None:
    """Response rate per variant with its interval, overall and per segment value (one panel per segment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(document["variants"])
    overall = {"n": document["twins"]["answered"], "variants": document["variants"]}
    blocks: list[tuple[str, dict[str, dict[str, Any]]]] = [("all twins", {"all": overall})]
    blocks += [(f"by {n.replace('_', ' ')}", g) for n, g in document.get("segments", {}).items()]
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.5 * len(blocks), 3.8), squeeze=False)
    width = 0.8 / max(1, len(keys))
    for ax, (title, groups) in zip(axes[0], blocks, strict=True):
        labels = list(groups)[:12]
        for j, key in enumerate(keys):
            rates = [groups[g]["variants"][key]["rate"] for g in labels]
            lows = [r - groups[g]["variants"][key]["interval"][0] for g, r in zip(labels, rates, strict=True)]
            highs = [
                groups[g]["variants"][key]["interval"][1] - r for g, r in zip(labels, rates, strict=True)
            ]
            xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, rates, width, yerr=[lows, highs], capsize=3, label=key)
        ax.set_xticks(
            range(len(labels)), [f"{g} ({groups[g]['n']})" for g in labels], rotation=20, fontsize=8
        )
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, None)
        ax.set_ylabel("response rate (95% interval)")
    axes[0][0].legend(title="variant", fontsize=8)
    fig.suptitle(f"{document['campaign']['name']}: simulated response rate per variant", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
