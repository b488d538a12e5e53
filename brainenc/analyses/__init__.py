"""Analyses built on fitted encoding models: shared semantic dimensions, model and layer
comparisons, noise ceilings, ROI summaries and variance partitioning."""
