"""The task names, defined once: models say which task they solve (ModelInfo.task), the metric vocabulary which
tasks measure a metric, datasets which tasks they serve, and the harness registers one runner per name
(alignbench.bench.tasks). Pure data: importing it is instant and imports nothing else."""

TASKS = ("semantic", "detection", "instance", "panoptic")
