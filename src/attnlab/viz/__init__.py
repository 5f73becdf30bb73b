"""Seeing attention: heatmaps and grids (matplotlib, Agg backend, so it works headless), the
one-file HTML viewer, attention rollout and the maps they all read.

    from attnlab.viz.extract import maps_from_folder
    maps = maps_from_folder("runs/demo/model", text="the old farmer sold red apples")
    write_viewer(maps, "attention.html")
"""

from attnlab.viz.heatmap import plot_attention
from attnlab.viz.html import write_viewer
from attnlab.viz.maps import AttentionMaps, AttentionView

__all__ = ["AttentionMaps", "AttentionView", "plot_attention", "write_viewer"]
