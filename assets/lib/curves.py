"""A training run's curve over its epochs, in the forms the Dagster UI renders within one
materialization (its Plots chart a numeric entry across materializations, not within one).

- :func:`sparkline`: a line of block characters ("▇▅▃▂▁"), shown as plain text in the metadata
  table itself.
- :func:`curve_markdown`: a chart of the loss and the validation Recall per epoch, an SVG
  embedded as a ``data:`` image in markdown, behind the entry's "[Show Markdown]". This
  version's UI (dagster-webserver 1.13) renders markdown metadata with react-markdown 8, whose
  image URLs are not rewritten, and rehype-sanitize with Dagster's schema, which adds ``data``
  to the protocols an ``img`` ``src`` may use; raw HTML (an inline ``<svg>``) is not rendered,
  and the page's Content-Security-Policy does not restrict images.
"""

from __future__ import annotations

import base64
from xml.sax.saxutils import escape

import dagster as dg

BARS = "▁▂▃▄▅▆▇█"

# The chart's geometry (pixels) and colours: light background, legible in the dark theme too.
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 72, 40, 40
LOSS_COLOUR, RECALL_COLOUR, BEST_COLOUR = "#2563eb", "#ea580c", "#6b7280"


def sparkline(values: list[float]) -> str:
    """One block character per value, the lowest ▁ and the highest █ (all ▄ when flat)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[3] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((v - low) / (high - low) * top)] for v in values)


def loss_line(history: list[dict]) -> str:
    """The loss per epoch as a sparkline, with its first and last values."""
    losses = [float(r["loss"]) for r in history]
    if not losses:
        return "-"
    return (
        f"{sparkline(losses)}  {losses[0]:.4f} → {losses[-1]:.4f}"
        f" over {len(losses)} epoch{'s' * (len(losses) != 1)}"
    )


def recall_line(history: list[dict], best_epoch: int) -> str:
    """The validation Recall at each check as a sparkline, with the best check's."""
    checked = [r for r in history if r.get("val_recall") is not None]
    if not checked:
        return "- (no validation check)"
    recalls = [float(r["val_recall"]) for r in checked]
    best = next((r for r in checked if r["epoch"] == best_epoch), None)
    text = f"{sparkline(recalls)}  {recalls[0]:.4f} → {recalls[-1]:.4f}"
    if best is not None:
        text += f", best {float(best['val_recall']):.4f} at epoch {best_epoch}"
    epochs = [r["epoch"] for r in checked]
    return text + f" ({len(checked)} check{'s' * (len(checked) != 1)}, epochs {_span(epochs)})"


def _span(epochs: list[int]) -> str:
    return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"


def curve_svg(history: list[dict], best_epoch: int, k: int) -> str:
    """The loss (left axis) and the validation Recall@k (right axis) per epoch, the best
    epoch dashed: a standalone SVG document."""
    epochs = [int(r["epoch"]) for r in history]
    first, last = (min(epochs), max(epochs)) if epochs else (1, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(epoch: float) -> float:
        return LEFT + (plot_w * (epoch - first) / (last - first) if last > first else plot_w / 2)

    def scale(values: list[float]):
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if high == low:
            low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
        return low, high, lambda v: TOP + plot_h * (1 - (v - low) / (high - low))

    losses = [(r["epoch"], float(r["loss"])) for r in history]
    recalls = [
        (r["epoch"], float(r["val_recall"])) for r in history if r.get("val_recall") is not None
    ]
    loss_low, loss_high, loss_y = scale([v for _, v in losses])
    recall_low, recall_high, recall_y = scale([v for _, v in recalls])

    def points(series, y) -> str:
        return " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in series)

    def text(tx: float, ty: float, body: str, anchor: str = "middle", colour: str = "#111827"):
        return (
            f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" fill="{colour}">'
            f"{escape(body)}</text>"
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none"'
        ' stroke="#d1d5db"/>',
    ]
    if any(e == best_epoch for e in epochs):
        bx = x(best_epoch)
        parts.append(
            f'<line x1="{bx:.1f}" y1="{TOP}" x2="{bx:.1f}" y2="{TOP + plot_h}"'
            f' stroke="{BEST_COLOUR}" stroke-dasharray="4 3"/>'
        )
        parts.append(text(bx, TOP - 4, f"best: epoch {best_epoch}", colour=BEST_COLOUR))
    if losses:
        parts.append(
            f'<polyline class="loss" points="{points(losses, loss_y)}" fill="none"'
            f' stroke="{LOSS_COLOUR}" stroke-width="2"/>'
        )
    if recalls:
        parts.append(
            f'<polyline class="val_recall" points="{points(recalls, recall_y)}" fill="none"'
            f' stroke="{RECALL_COLOUR}" stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x(e):.1f}" cy="{recall_y(v):.1f}" r="3" fill="{RECALL_COLOUR}"/>'
            for e, v in recalls
        ]
    # Axes: each series' range at its side, the first and last epoch below.
    parts += [
        text(LEFT - 6, TOP + 10, f"{loss_high:.4f}", "end", LOSS_COLOUR),
        text(LEFT - 6, TOP + plot_h, f"{loss_low:.4f}", "end", LOSS_COLOUR),
        text(12, TOP + plot_h / 2, "loss", "start", LOSS_COLOUR),
        text(LEFT + plot_w + 6, TOP + 10, f"{recall_high:.4f}", "start", RECALL_COLOUR),
        text(LEFT + plot_w + 6, TOP + plot_h, f"{recall_low:.4f}", "start", RECALL_COLOUR),
        text(LEFT + plot_w + 6, TOP + plot_h / 2, f"val R@{k}", "start", RECALL_COLOUR),
        text(x(first), TOP + plot_h + 16, str(first)),
        text(LEFT + plot_w / 2, HEIGHT - 8, "epoch"),
    ]
    if last != first:
        parts.append(text(x(last), TOP + plot_h + 16, str(last)))
    parts.append(
        text(LEFT, 16, f"loss (blue) and validation Recall@{k} (orange) per epoch", "start")
    )
    parts.append("</svg>")
    return "".join(parts)


def curve_markdown(history: list[dict], best_epoch: int, k: int) -> dg.MarkdownMetadataValue:
    """The chart as a ``data:`` image, with the two sparklines as its caption."""
    svg = curve_svg(history, best_epoch, k)
    encoded = base64.b64encode(svg.encode()).decode()
    return dg.MetadataValue.md(
        f"![loss and validation Recall@{k} per epoch](data:image/svg+xml;base64,{encoded})\n\n"
        f"loss: {loss_line(history)}\n\n"
        f"validation Recall@{k}: {recall_line(history, best_epoch)}\n"
    )
