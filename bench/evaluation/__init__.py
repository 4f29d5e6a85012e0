"""Evaluation drivers: prediction files or model outputs into metric accumulators."""
