"""Measure the CPU paths of the deformable convolution (models/ops/deform.py) at the miniature protocol's shapes.

    python docs/measure_deform_conv_cpu.py [--repeats 10] [--steps 6] [--threads 1] [--channels-last]

One run, one thread by default (`torch.set_num_threads`), process CPU time (`time.process_time`), which
depends less than wall time on other jobs sharing the cores; the load average is printed. Reported:

1. forward + backward (and forward alone, under no_grad) of the FaPN FAM deformable convolution (DCNv2,
   64 channels, 8 deformable groups, 3x3, batch 4) and of SFNet Table 2(d)'s (DCNv1, 128 -> 64 channels,
   1 group) at the pyramid sizes of a 96x192 crop (24x48, 12x24, 6x12, 3x6): `deform_conv2d_by_sampling`
   against `torchvision.ops.deform_conv2d`, median of `--repeats` runs each, ratio new / torchvision.
   Random offsets (std 2 px: fractional positions, some outside the map) and masks; the largest
   differences of outputs and gradients, relative to the largest magnitude, are printed beside the times.
2. the whole training step (forward, loss, backward, AdamW step; the miniature recipe's optimizer) of
   `semantic_fpn_fapn_r18` with 64 neck / head channels at batch 4 on 96x192 crops, with each path
   (`ModulatedDeformConv2d.sample_on_cpu`), and of `semantic_fpn_fpn_r18` with the same options for
   reference; median of `--steps` steps after one warm-up step, the runs interleaved so that a change of
   load hits both. Both FaPN runs start from the same weights and data: their first losses are printed.
3. with `--channels-last`: the same training steps with the model and the images in channels_last memory
   format (measured, not used by the trainer).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from torchvision.ops import deform_conv2d

from alignbench import models
from alignbench.models.ops.deform import ModulatedDeformConv2d, deform_conv2d_by_sampling

BATCH, CROP = 4, (96, 192)
SIZES = ((24, 48), (12, 24), (6, 12), (3, 6))  # strides 4, 8, 16, 32 of a 96x192 crop
# (name, input channels, output channels, deformable groups, modulated); the miniature protocol's 64 channels
LAYERS = (
    ("FaPN FAM: DCNv2 64->64, 8 groups", 64, 64, 8, True),
    ("SFNet Table 2(d): DCNv1 128->64, 1 group", 128, 64, 1, False),
)


def median_cpu_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def layer_inputs(size, in_channels, out_channels, groups, modulated, seed: int) -> list[torch.Tensor | None]:
    """Input, offset (std 2 px), mask or None, weight, bias, all requiring gradients."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    taps = groups * 9
    x = torch.randn(BATCH, in_channels, height, width, generator=generator)
    offset = 2.0 * torch.randn(BATCH, 2 * taps, height, width, generator=generator)
    mask = torch.rand(BATCH, taps, height, width, generator=generator) if modulated else None
    weight = torch.randn(out_channels, in_channels, 3, 3, generator=generator) / (in_channels * 9) ** 0.5
    bias = torch.randn(out_channels, generator=generator)
    return [None if t is None else t.requires_grad_() for t in (x, offset, mask, weight, bias)]


def convolve(kernel, inputs):
    x, offset, mask, weight, bias = inputs
    return kernel(x, offset, weight, bias, padding=(1, 1), mask=mask)


def differentiable(inputs):
    return [t for t in inputs if t is not None]


def forward_backward(kernel, inputs, upstream):
    return lambda: torch.autograd.grad(convolve(kernel, inputs), differentiable(inputs), upstream)


def forward_only(kernel, inputs):
    def run():
        with torch.no_grad():
            convolve(kernel, inputs)

    return run


def measure_operator(repeats: int) -> None:
    print(f"1. deformable convolution, batch {BATCH}, 3x3 (ms of CPU, median of {repeats})")
    header = f"{'fwd+bwd torchvision':>19} {'sampling':>9} {'ratio':>6} | {'fwd torchvision':>15} {'sampling':>9} {'ratio':>6}"
    for name, in_channels, out_channels, groups, modulated in LAYERS:
        print(f"{name}\n{'size':>7} | {header} | max rel. diff: output, then grads of x, offset, [mask,] weight, bias")
        totals = [0.0, 0.0]
        for index, size in enumerate(SIZES):
            inputs = layer_inputs(size, in_channels, out_channels, groups, modulated, seed=index)
            upstream = torch.randn(BATCH, out_channels, *size, generator=torch.Generator().manual_seed(100 + index))
            reference = median_cpu_seconds(forward_backward(deform_conv2d, inputs, upstream), repeats)
            sampled = median_cpu_seconds(forward_backward(deform_conv2d_by_sampling, inputs, upstream), repeats)
            reference_fwd = median_cpu_seconds(forward_only(deform_conv2d, inputs), repeats)
            sampled_fwd = median_cpu_seconds(forward_only(deform_conv2d_by_sampling, inputs), repeats)
            if index < 3:  # the aligned levels P2-P4; P5 has no alignment module
                totals[0] += reference
                totals[1] += sampled
            outputs = [convolve(kernel, inputs) for kernel in (deform_conv2d, deform_conv2d_by_sampling)]
            gradients = [torch.autograd.grad(output, differentiable(inputs), upstream) for output in outputs]
            pairs = [(outputs[0].detach(), outputs[1].detach()), *zip(*gradients, strict=True)]
            differences = [(a - b).abs().max() / a.abs().max() for a, b in pairs]
            print(
                f"{size[0]:>3}x{size[1]:<3} | {1e3 * reference:>19.2f} {1e3 * sampled:>9.2f} {sampled / reference:>6.3f} | "
                f"{1e3 * reference_fwd:>15.2f} {1e3 * sampled_fwd:>9.2f} {sampled_fwd / reference_fwd:>6.3f} | "
                + " ".join(f"{float(d):.1e}" for d in differences)
            )
        print(f"levels 24x48, 12x24, 6x12 together, fwd+bwd: {1e3 * totals[0]:.1f} -> {1e3 * totals[1]:.1f} ms, ratio {totals[1] / totals[0]:.3f}")


def training_step(model, optimizer, images, targets, channels_last: bool):
    def run():
        losses = model.loss(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    if channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    return run


def measure_training(steps: int, channels_last: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, *CROP, generator=generator)
    targets = torch.randint(0, 19, (BATCH, *CROP), generator=generator)
    options = {"num_classes": 19, "neck_channels": 64, "head_channels": 64}
    torch.manual_seed(0)
    fapn = models.build("semantic_fpn_fapn_r18", **options).train()
    torch.manual_seed(0)
    fpn = models.build("semantic_fpn_fpn_r18", **options).train()
    runs = {  # name: (model, sample_on_cpu, channels_last)
        "FaPN, torchvision deform_conv2d": (copy.deepcopy(fapn), False, False),
        "FaPN, deform_conv2d_by_sampling": (copy.deepcopy(fapn), True, False),
        "FPN": (fpn, True, False),
    }
    if channels_last:
        runs["FaPN, by sampling, channels_last"] = (copy.deepcopy(fapn), True, True)
        runs["FPN, channels_last"] = (copy.deepcopy(fpn), True, True)
    steppers, first_losses = {}, {}
    for name, (model, sample_on_cpu, memory_format) in runs.items():
        for module in model.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.sample_on_cpu = sample_on_cpu
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3, weight_decay=1e-4)
        steppers[name] = training_step(model, optimizer, images, targets, memory_format)
        first_losses[name] = steppers[name]()  # warm-up step, same weights and data for every FaPN run
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(steps):
        for name, step in steppers.items():
            start = time.process_time()
            step()
            times[name].append(time.process_time() - start)
    print(f"2. training step, batch {BATCH}, {CROP[0]}x{CROP[1]}, 64 neck / head channels (CPU s, median of {steps})")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"{name:>34}: {seconds:.3f} s  (first loss {first_losses[name]:.6f})")
    reference = medians["FaPN, torchvision deform_conv2d"]
    print(f"ratio FaPN step by sampling / torchvision: {medians['FaPN, deform_conv2d_by_sampling'] / reference:.3f}")
    print(f"ratio FaPN step by sampling / FPN step: {medians['FaPN, deform_conv2d_by_sampling'] / medians['FPN']:.3f}")
    if channels_last:
        fapn_ratio = medians["FaPN, by sampling, channels_last"] / medians["FaPN, deform_conv2d_by_sampling"]
        print(f"ratio channels_last / contiguous, FaPN: {fapn_ratio:.3f}")
        print(f"ratio channels_last / contiguous, FPN: {medians['FPN, channels_last'] / medians['FPN']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per operator measurement")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per model")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--channels-last", action="store_true", help="also time the training steps in channels_last")
    parser.add_argument("--skip-training", action="store_true", help="only the operator measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average at start {os.getloadavg()[0]:.2f}")
    measure_operator(args.repeats)
    if not args.skip_training:
        measure_training(args.steps, args.channels_last)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
