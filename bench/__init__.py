"""alignbench harness: command line, data, evaluation, profiling and the results store.

Keep this package's import light: commands import what they need when they run.
"""
