"""Pictures of attention: heatmaps (matplotlib, Agg backend, so it works headless)."""

from attnlab.viz.heatmap import plot_attention

__all__ = ["plot_attention"]
