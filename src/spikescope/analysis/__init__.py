"""Analyses of trained spiking models (spike heat maps: :mod:`.heatmap`)."""
