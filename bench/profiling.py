"""Model complexity and speed: parameters, multiply-accumulates (fvcore) and latency.

Counting conventions (stated in every table footnote through `MAC_FOOTNOTE`):

* GMACs: billions of multiply-accumulates, what the papers call "GFLOPs" (SFNet Table 4 at 1024x1024
  matches a MAC count). fvcore's FlopCountAnalysis counts one MAC per multiply-add for
  convolutions and matrix products; we add handles for the operators it does not know:
  `torchvision::deform_conv2d` (the convolution's MACs plus 4 per bilinear sample and 1 per modulation),
  `torchvision::roi_align` (4 per bilinear sample), grid sampling and bilinear interpolation (4 per
  output value), attention-style products (bmm / matmul / einsum are fvcore's). Nearest upsampling
  copies values: 0 MACs.
* Other GOPs: element-wise arithmetic, normalisation, softmax (3 per value: exp, sum, divide), pooling
  and reductions, and detection post-processing (NMS, mask pasting: upper bounds), counted separately
  so the MAC figure stays comparable with the papers.
* Every other operator of a traced model must be in `ZERO_COST_OPS` (shape, indexing, creation, copy):
  `count_flops` reports anything else as uncounted, and the tests require none for every registered model.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import platform
import statistics
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from alignbench import models
from alignbench.bench.errors import UserError
from alignbench.models.registry import builder_options
from alignbench.reports.console import text_table

with warnings.catch_warnings():
    # fvcore scripts a helper with torch.jit.script at import, which torch 2.14 reports as deprecated
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis, parameter_count_table
    from fvcore.nn import jit_handles as fv

log = logging.getLogger(__name__)

MAC_FOOTNOTE = (
    "GMACs: billions of multiply-accumulates, what the papers call GFLOPs; deformable convolution, grid "
    "sampling, RoIAlign and bilinear interpolation included (4 MACs per bilinear sample)."
)

Handle = Callable[[list, list], Any]


def _shape(value) -> list[int] | None:
    return fv.get_shape(value)


def _numel(value) -> int:
    shape = _shape(value)
    return math.prod(shape) if shape else 0


def _per_output(scale: float) -> Handle:
    """`scale` operations per value of the first output."""

    def handle(inputs, outputs):
        return int(scale * _numel(outputs[0]))

    return handle


def _per_input(scale: float) -> Handle:
    """`scale` operations per value of the first input."""

    def handle(inputs, outputs):
        return int(scale * _numel(inputs[0]))

    return handle


def _deform_conv2d(inputs, outputs) -> int:
    """torchvision::deform_conv2d(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
    dil_h, dil_w, weight_groups, offset_groups, use_mask): conv MACs + bilinear sampling + modulation."""
    batch, in_channels = _shape(inputs[0])[:2]
    out_channels, in_per_group, kernel_h, kernel_w = _shape(inputs[1])
    out_h, out_w = _shape(outputs[0])[2:]
    use_mask = bool(inputs[13].toIValue()) if len(inputs) > 13 else True
    convolution = batch * out_channels * out_h * out_w * in_per_group * kernel_h * kernel_w
    samples = batch * in_channels * kernel_h * kernel_w * out_h * out_w
    return convolution + samples * (4 + int(use_mask))


def _roi_align(inputs, outputs) -> int:
    """torchvision::roi_align(input, rois, scale, pooled_h, pooled_w, sampling_ratio, aligned): each
    output value averages sampling_ratio^2 bilinear samples (adaptive ratio (-1) assumed 2x2)."""
    ratio = inputs[5].toIValue() if len(inputs) > 5 else 2
    ratio = ratio if isinstance(ratio, int) and ratio > 0 else 2
    return _numel(outputs[0]) * ratio * ratio * 4


def _nms(inputs, outputs) -> int:
    """torchvision::nms(boxes, scores, threshold): at most N^2 box IoUs of ~8 operations each."""
    boxes = _shape(inputs[0])[0]
    return 8 * boxes * boxes


# Scripted functions called inside a trace (prim::CallFunction) hide their operators from fvcore; the
# ones our models call are costed here by name, any other is reported as uncounted.
_UNKNOWN_FUNCTIONS: Counter = Counter()


def _call_function(inputs, outputs) -> int:
    name = inputs[0].node().s("name") if inputs[0].node().hasAttribute("name") else "?"
    if name == "_batched_nms_coordinate_trick":
        # torchvision.ops.boxes: offset the boxes per class (N x 4 adds), then nms over all N boxes
        boxes = _shape(inputs[1])[0]
        return 4 * boxes + _nms(inputs[1:], outputs)
    if name == "_onnx_paste_masks_in_image_loop":
        # torchvision roi_heads: each mask resized bilinearly (4 per value) into its box; boxes lie inside
        # the image, so 4 x (detections x H x W) bounds it from above
        return 4 * _numel(outputs[0])
    _UNKNOWN_FUNCTIONS[f"prim::CallFunction[{name}]"] += 1
    return 0


def _mac_handles() -> dict[str, Handle]:
    return {
        "aten::_convolution": fv.conv_flop_jit,
        "aten::addmm": fv.addmm_flop_jit,
        "aten::linear": fv.linear_flop_jit,
        "aten::matmul": fv.matmul_flop_jit,
        "aten::mm": fv.matmul_flop_jit,
        "aten::bmm": fv.bmm_flop_jit,
        "aten::einsum": fv.einsum_flop_jit,
        "aten::baddbmm": _baddbmm,
        "aten::scaled_dot_product_attention": _attention,
        "torchvision::deform_conv2d": _deform_conv2d,
        "torchvision::roi_align": _roi_align,
        "aten::grid_sampler": _per_output(4),
        "aten::upsample_bilinear2d": _per_output(4),
        "aten::upsample_nearest2d": _per_output(0),
    }


def _attention(inputs, outputs) -> int:
    """aten::scaled_dot_product_attention(q (..., L, E), k (..., S, E), v (..., S, Ev), ...): the two
    products, scores q.k^T (L * S * E MACs per batch-head) and weighted values (L * S * Ev). The softmax
    inside the fused operator (a few operations per score) is not in "other ops"; FPT's attention is the
    only user, and its cost is dominated by the products."""
    query, key, value = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    heads_times_queries = math.prod(query[:-1])
    keys = key[-2]
    return heads_times_queries * keys * (query[-1] + value[-1])


def _baddbmm(inputs, outputs) -> int:
    batch, n, k = _shape(inputs[1])
    return batch * n * k * _shape(inputs[2])[-1]


ELEMENTWISE_OPS = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "pow", "sqrt", "rsqrt",
    "exp", "log", "log2", "log1p", "expm1", "sigmoid", "sigmoid_", "tanh", "relu", "relu_", "hardtanh", "hardtanh_", "gelu", "silu",
    "leaky_relu", "clamp", "clamp_", "clamp_min", "clamp_max", "minimum", "maximum", "where", "nan_to_num",
    "eq", "ne", "gt", "ge", "lt", "le", "remainder", "floor_divide", "floor", "ceil", "round", "reciprocal",
    "__and__", "__or__", "__iand__", "__ior__", "__xor__", "bitwise_and", "bitwise_or", "bitwise_not",
    "logical_and", "logical_or", "logical_not", "masked_fill", "masked_fill_",
    "square", "addcmul", "lerp", "fill_", "zero_", "sign",
)
REDUCTION_OPS = ("mean", "sum", "amax", "amin", "max", "min", "argmax", "argmin", "norm", "linalg_vector_norm", "cumsum", "prod", "all", "any")


def _other_handles() -> dict[str, Handle]:
    handles: dict[str, Handle] = {f"aten::{name}": _per_output(1) for name in ELEMENTWISE_OPS}
    handles.update({f"aten::{name}": _per_input(1) for name in REDUCTION_OPS})
    handles.update(
        {
            "aten::batch_norm": fv.batchnorm_flop_jit,
            "aten::group_norm": fv.norm_flop_counter(2),
            "aten::layer_norm": fv.norm_flop_counter(2),
            "aten::instance_norm": fv.norm_flop_counter(1),
            "aten::softmax": _per_output(3),
            "aten::log_softmax": _per_output(3),
            "aten::_softmax": _per_output(3),
            "aten::max_pool2d": _max_pool,
            "aten::avg_pool2d": _max_pool,
            "aten::adaptive_avg_pool2d": _per_input(1),
            "aten::adaptive_max_pool2d": _per_input(1),
            "aten::topk": _per_input(1),
            "aten::sort": _sort,
            "aten::argsort": _sort,
            "torchvision::nms": _nms,
            "prim::CallFunction": _call_function,
        }
    )
    return handles


def _max_pool(inputs, outputs) -> int:
    """kernel_h * kernel_w operations per output value."""
    kernel = _constant_ints(inputs[1])
    return _numel(outputs[0]) * math.prod(kernel * 2 if len(kernel) == 1 else kernel)


def _constant_ints(value) -> list[int]:
    """A traced int or int-list argument (a constant, or a ListConstruct of constants)."""
    constant = value.toIValue()
    if constant is not None:
        return list(constant) if isinstance(constant, (list, tuple)) else [constant]
    return [item.toIValue() for item in value.node().inputs()]


def _sort(inputs, outputs) -> int:
    count = _numel(inputs[0])
    return int(count * max(1.0, math.log2(max(count, 2))))


# Operators without arithmetic: shapes, indexing, creation, copies and type conversions.
ZERO_COST_OPS = frozenset(
    "aten::" + name
    for name in (
        "Int", "Float", "Bool", "ScalarImplicit", "size", "numel", "dim", "view", "reshape", "flatten", "unflatten",
        "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "repeat", "permute", "transpose",
        "t", "contiguous", "clone", "detach", "to", "type_as", "copy_", "slice", "select", "narrow", "index",
        "index_select", "index_put_", "index_put", "gather", "scatter", "scatter_", "masked_select", "nonzero",
        "cat", "stack", "split", "split_with_sizes", "chunk", "unbind", "roll", "flip", "constant_pad_nd", "pad",
        "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "empty", "empty_like", "new_zeros",
        "new_ones", "new_full", "new_empty", "new_tensor", "arange", "linspace", "meshgrid", "tensor",
        "scalar_tensor", "as_tensor", "alias", "lift_fresh", "dropout", "feature_dropout", "unfold",
        "pixel_shuffle", "view_as", "reshape_as", "broadcast_tensors", "_unsafe_view", "expand_copy",
        "upsample_nearest1d", "resolve_conj", "resolve_neg", "one_hot", "embedding", "repeat_interleave",
        "item", "ListUnpack", "TupleUnpack", "_shape_as_tensor", "_reshape_from_tensor",
    )
)


@dataclass
class Complexity:
    """Parameters and operation counts of one model at one input size."""

    input_size: tuple[int, int]
    params: int
    params_by_module: dict[str, int]
    macs: int
    macs_by_op: dict[str, int]
    other_ops: int
    other_by_op: dict[str, int]
    uncounted_ops: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    def to_json(self) -> dict:
        return {**asdict(self), "gmacs": self.gmacs, "params_m": self.params_m, "other_gops": self.other_ops / 1e9}


def count_parameters(model: nn.Module) -> tuple[int, dict[str, int]]:
    """Total parameters and per top-level module, counted by the models' one counter (models.count_parameters)."""
    by_module = {name: models.count_parameters(child) for name, child in model.named_children()}
    return models.count_parameters(model), {name: count for name, count in by_module.items() if count}


def parameter_table(model: nn.Module, max_depth: int = 3) -> str:
    """fvcore's per-module parameter table."""
    return parameter_count_table(model, max_depth=max_depth)


class _TupleOutputs(nn.Module):
    """Flattens a model's nested outputs (dicts, lists) to a tuple of tensors, which tracing needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return tuple(_tensors(self.model(*inputs)))


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def example_inputs(model: nn.Module, input_size: Sequence[int], batch: int = 1, device: str = "cpu") -> tuple:
    """A model's own `example_inputs(height, width, batch)` if it has one, else (images,) in [0, 1]."""
    height, width = input_size
    if hasattr(model, "example_inputs"):
        return tuple(model.example_inputs(height, width, batch=batch, device=device))
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 3, height, width, generator=generator).to(device),)


def count_flops(model: nn.Module, input_size: Sequence[int], inputs: tuple | None = None) -> Complexity:
    """Trace `model` (eval mode, batch 1) with fvcore and count MACs and other operations by operator."""
    model = model.eval()
    inputs = inputs if inputs is not None else example_inputs(model, input_size)
    mac_handles, other_handles = _mac_handles(), _other_handles()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes, jit deprecation
        analysis = FlopCountAnalysis(_TupleOutputs(model), inputs)
        analysis._ignored_ops = set(ZERO_COST_OPS)  # report every other operator without a handle
        analysis.set_op_handle(**mac_handles, **other_handles)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        _UNKNOWN_FUNCTIONS.clear()
        by_op = analysis.by_operator()
        uncounted = dict(analysis.unsupported_ops()) | dict(_UNKNOWN_FUNCTIONS)
    mac_names = {_short(name) for name in mac_handles} | {"conv", "addmm", "linear", "matmul", "bmm", "einsum"}
    macs_by_op = {op: int(n) for op, n in by_op.items() if op in mac_names}
    other_by_op = {op: int(n) for op, n in by_op.items() if op not in mac_names}
    params, by_module = count_parameters(model)
    return Complexity(
        input_size=tuple(input_size),
        params=params,
        params_by_module=by_module,
        macs=sum(macs_by_op.values()),
        macs_by_op=macs_by_op,
        other_ops=sum(other_by_op.values()),
        other_by_op=other_by_op,
        uncounted_ops=uncounted,
    )


def _short(op_name: str) -> str:
    """fvcore keys by_operator() by the name after '::' (e.g. 'deform_conv2d'), 'conv' for convolutions."""
    return "conv" if op_name == "aten::_convolution" else op_name.split("::", 1)[1]


# --- latency ---------------------------------------------------------------------------------------------

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Latency:
    """Timing of repeated forward passes at batch `batch`; times in milliseconds."""

    device: str
    dtype: str
    input_size: tuple[int, int]
    batch: int
    warmup: int
    iterations: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    fps: float
    peak_memory_mb: float | None
    options: dict
    environment: dict

    def to_json(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        kind = "CPU" if self.device == "cpu" else self.environment.get("gpu", "GPU")
        return f"{self.median_ms:.1f} ms ({kind}, {self.dtype}, batch {self.batch})"


def environment(device: str) -> dict:
    """What the timing depends on: torch, CUDA, cuDNN, GPU and driver, or the CPU."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(torch.device(device))
        info.update(
            {
                "gpu": properties.name,
                "gpu_memory_gb": round(properties.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "driver": _nvidia_driver(),
            }
        )
    return info


def _nvidia_driver() -> str | None:
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.strip().splitlines()[0] if output.strip() else None


def measure_latency(
    model: nn.Module,
    input_size: Sequence[int],
    device: str = "cuda",
    dtype: str = "fp32",
    batch: int = 1,
    warmup: int = 10,
    iterations: int = 50,
    channels_last: bool = False,
    compile: bool = False,
    cudnn_benchmark: bool = False,
) -> Latency:
    """Median / p90 forward time of `model` in inference mode.

    CUDA: one pair of CUDA events per iteration, synchronised, after `warmup` untimed passes; peak memory
    from the caching allocator. CPU: wall-clock per iteration (labelled CPU). fp16 / bf16 run under
    autocast, which keeps precision-sensitive operators in fp32.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    if not on_cuda and dtype == "fp16":
        raise ValueError("fp16 timing needs CUDA; use bf16 or fp32 on the CPU")
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        model = model.eval().to(device)
        inputs = example_inputs(model, input_size, batch=batch, device=device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = tuple(x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x for x in inputs)
        runner = torch.compile(model) if compile else model
        autocast = (
            torch.autocast(device_type="cuda" if on_cuda else "cpu", dtype=DTYPES[dtype])
            if dtype != "fp32"
            else contextlib.nullcontext()
        )
        times: list[float] = []
        with torch.inference_mode(), autocast:
            for _ in range(warmup):
                runner(*inputs)
            if on_cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                for _ in range(iterations):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    runner(*inputs)
                    end.record()
                    end.synchronize()
                    times.append(start.elapsed_time(end))
            else:
                for _ in range(iterations):
                    begin = time.perf_counter()
                    runner(*inputs)
                    times.append((time.perf_counter() - begin) * 1000.0)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda else None
    finally:
        torch.backends.cudnn.benchmark = previous_benchmark
    median = statistics.median(times)
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return Latency(
        device=device,
        dtype=dtype,
        input_size=tuple(input_size),
        batch=batch,
        warmup=warmup,
        iterations=iterations,
        median_ms=median,
        p90_ms=p90,
        mean_ms=statistics.fmean(times),
        fps=1000.0 * batch / median,
        peak_memory_mb=peak,
        options={"channels_last": channels_last, "compile": compile, "cudnn_benchmark": cudnn_benchmark},
        environment=environment(device),
    )


def build_for_profiling(
    name: str, input_size: Sequence[int] | None = None, num_classes: int | None = None, device: str = "cpu",
    checkpoint: str | None = None, options: dict | None = None,
) -> nn.Module:
    """A registered model as the papers count it: backbone BatchNorm frozen (see models.measured_params);
    detectors set to keep an `input_size` image at that size (torchvision's transform would otherwise
    rescale it to its own 800 x 1333 default); with `checkpoint`, its weights loaded (models.build); `options`:
    more builder keywords (a suite row's, e.g. narrower necks), which may also override frozen_bn."""
    accepted = builder_options(name)
    options = {**({"frozen_bn": True} if "frozen_bn" in accepted else {}), **(options or {})}
    if input_size is not None and {"min_size", "max_size"} <= accepted:
        options.update(min_size=min(input_size), max_size=max(input_size))
    if num_classes is not None:
        options["num_classes"] = num_classes
    if checkpoint is not None:  # passed only when given
        options["checkpoint"] = str(checkpoint)
    torch.manual_seed(0)
    return models.build(name, **options).to(device).eval()


def complexity_at(name: str, input_size: Sequence[int], model: nn.Module | None = None, options: dict | None = None) -> Complexity:
    """Parameters and operation counts of a registered model at one input size (of `model`, when given:
    the model `build_for_profiling(name, input_size, options=options)` builds)."""
    return count_flops(model if model is not None else build_for_profiling(name, input_size, options=options), input_size)


# --- the `alignbench profile` rows ------------------------------------------------------------------------


def _percent_difference(measured: float, paper: float | None) -> float | None:
    return None if paper is None else 100.0 * (measured - paper) / paper


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's torch.OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError
    ("DefaultCPUAllocator: can't allocate memory"), which torch does not give a type of its own."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error))


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _size_text(size: Sequence[int]) -> str:
    return "x".join(map(str, size))


def profile_models(
    names: Sequence[str] | None = None,
    task: str | None = None,
    input_size: Sequence[int] | None = None,
    device: str | None = None,
    timing: dict | None = None,
    per_module: bool = False,
    progress: bool = False,
    on_row: Callable[[list[dict]], None] | None = None,
    checkpoint: str | None = None,
) -> list[dict]:
    """One row per model: params and GMACs (at `input_size` or the model's paper input) beside the paper's
    figures where the model's metadata has them, and latency when `device` is given (with `checkpoint`'s
    weights loaded, for one model). Each model is built once, unless the paper counts its GMACs at another
    size and the model's build depends on the size (detectors).

    A model that runs out of memory (counting at a large paper size, or timing) gets a row whose `error`
    says "out of memory at HxW", with the figures it could not measure left empty, and the other models
    are still profiled. `on_row(rows_so_far)` is called after every model, so that a caller can save the
    table as it grows.
    """
    try:
        infos = [models.get_info(name) for name in names] if names else models.list_models(task=task)
    except ValueError as error:
        raise UserError(str(error)) from None
    rows = []
    for info in tqdm(infos, desc="profiling", unit="model", disable=not progress):
        size = tuple(input_size) if input_size else tuple(info.input_size)
        rows.append(_profile_row(info, size, device, timing, per_module, checkpoint))
        if on_row is not None:
            on_row(rows)
    return rows


def _profile_row(info, size: tuple[int, int], device: str | None, timing: dict | None, per_module: bool,
                 checkpoint: str | None = None) -> dict:
    """The `profile_models` row of one model; out-of-memory failures end up in its `error`."""
    paper_gflops = getattr(info, "paper_gflops", None)
    paper_size = tuple(getattr(info, "flops_input_size", None) or info.input_size)
    row = {
        "name": info.name,
        "task": info.task,
        "paper": info.paper,
        "table": info.table,
        "row": info.row,
        "input_size": list(size),
        "params_m": None,
        "paper_params_m": info.paper_params_m,
        "params_diff_percent": None,
        "gmacs": None,
        "other_gops": None,
        "macs_by_op": {},
        "uncounted_ops": {},
        "paper_gflops": paper_gflops,
        "paper_flops_input_size": list(paper_size) if paper_gflops is not None else None,
        "gmacs_at_paper_input": None,
        "gmacs_diff_percent": None,
        "latency": None,
        "error": None,
    }
    step_size = size  # the input size being measured, for the out-of-memory message
    model = None
    out_of_memory = False
    try:
        try:
            model = build_for_profiling(info.name, size, checkpoint=checkpoint)
        except ValueError as error:  # the models' one-line errors (e.g. weights that do not fit)
            raise UserError(f"{info.name}: {error}") from None
        complexity = complexity_at(info.name, size, model)
        row.update(
            params_m=complexity.params_m,
            params_diff_percent=_percent_difference(complexity.params_m, info.paper_params_m),
            gmacs=complexity.gmacs,
            other_gops=complexity.other_ops / 1e9,
            macs_by_op=complexity.macs_by_op,
            uncounted_ops=complexity.uncounted_ops,
        )
        if paper_gflops is not None:
            step_size = paper_size
            sized = {"min_size", "max_size"} <= builder_options(info.name)  # the build depends on the input size
            at_paper_size = complexity if paper_size == size else complexity_at(info.name, paper_size, None if sized else model)
            row["gmacs_at_paper_input"] = at_paper_size.gmacs
            row["gmacs_diff_percent"] = _percent_difference(at_paper_size.gmacs, paper_gflops)
        step_size = size
        if per_module:
            row["per_module"] = parameter_table(model)
        if device:
            try:
                row["latency"] = measure_latency(model, size, device=device, **(timing or {})).to_json()
            except ValueError as error:
                raise UserError(f"--device {device}: {error}") from None
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        log.warning("%s: out of memory at %s (%s)", info.name, _size_text(step_size), (str(error) or type(error).__name__).splitlines()[0][:200])
        row["error"] = f"out of memory at {_size_text(step_size)}"
        out_of_memory = True
    del model
    if out_of_memory:
        _release_memory()  # outside the except block, whose traceback still holds the failed step's tensors
    if row["params_m"] is None:  # counting failed: the parameters need no forward pass
        row["params_m"] = models.measured_params(info.name) / 1e6
        row["params_diff_percent"] = _percent_difference(row["params_m"], info.paper_params_m)
    return row


def profile_table(rows: Sequence[dict]) -> str:
    """The complexity table, paper figures beside measured ones, with the counting footnote."""
    def number(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    def signed(value):
        return "-" if value is None else f"{value:+.1f}%"

    timed = any(row["latency"] for row in rows)
    failed = any(row.get("error") for row in rows)
    header = ["model", "input", "params (M)", "paper", "diff", "GMACs", "other GOPs", "paper GFLOPs @input", "diff"]
    if timed:
        header += ["median ms", "p90 ms", "FPS"]
    if failed:
        header += ["note"]
    lines = []
    for row in rows:
        paper_flops = "-"
        if row["paper_gflops"] is not None:
            size = "x".join(map(str, row["paper_flops_input_size"]))
            paper_flops = f"{row['paper_gflops']:.1f} @{size} (ours {number(row['gmacs_at_paper_input'], 1)})"
        line = [
            row["name"], "x".join(map(str, row["input_size"])), number(row["params_m"]), number(row["paper_params_m"], 1),
            signed(row["params_diff_percent"]), number(row["gmacs"]), number(row["other_gops"]), paper_flops,
            signed(row["gmacs_diff_percent"]),
        ]
        if timed:
            latency = row["latency"]
            line += [number(latency["median_ms"], 1), number(latency["p90_ms"], 1), number(latency["fps"], 1)] if latency else ["-"] * 3
        if failed:
            line += [row.get("error") or ""]
        lines.append(line)
    parts = [text_table(header, lines), MAC_FOOTNOTE]
    if timed:
        first = next(row["latency"] for row in rows if row["latency"])
        env = first["environment"]
        device = env.get("gpu") or f"CPU ({env['cpu']}, {env['cpu_threads']} threads)"
        parts.append(
            f"Latency: {device}, {first['dtype']}, batch {first['batch']}, {first['warmup']} warm-up + "
            f"{first['iterations']} timed passes, options {first['options']}, torch {env['torch']}"
            + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}, driver {env['driver']}" if env.get("cuda") else "")
        )
    uncounted = {op for row in rows for op in row["uncounted_ops"]}
    if uncounted:
        parts.append(f"WARNING: operators without a cost handle: {', '.join(sorted(uncounted))}")
    for row in rows:
        if row.get("per_module"):
            parts.append(f"{row['name']}:\n{row['per_module']}")
    return "\n\n".join(parts)
