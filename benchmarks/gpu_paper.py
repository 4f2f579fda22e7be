"""The `paper` profile's inspector timed on a GPU in fp16, through PyTorch, per 60-patch acquisition.

The line's GPU path is Triton's TensorRT plan of the exported ONNX (`gpu` config). TensorRT is
not on the development machines, and the paper profile's inspector (85 M parameters in the
served graph, 340 MB of float32 weights) cannot travel to a lent GPU machine, which has PyTorch
but neither TensorFlow nor TensorRT. So this times the same exported ONNX graph converted to PyTorch (onnx2torch),
under fp16 autocast (convolutions and matrix products in fp16, as a TensorRT fp16 plan runs
them; reductions and the scores' arithmetic in fp32), against the paper's figure of
0.1689 ms per patch on an RTX A4500.

It times two graphs: the whole served inspector (one 60-patch acquisition per call) and its
reconstruction alone (X -> X_hat, cut from it: the network the paper's per-patch figure is of).
Two steps, because weights do not change the time and 340 MB cannot travel:

    # here (TensorFlow + tf2onnx, about 11 GB and 2-3 min): convert; keep every tensor's shape,
    # mean and spread, drop the large ones' values
    python -m benchmarks.gpu_paper prepare --out .gpu/paper
    # on the GPU machine (PyTorch, onnx, onnx2torch): refill the weights, time, compare with fp32
    python -m benchmarks.gpu_paper time --model .gpu/paper --json $OUT/gpu_paper.json

Prints figures only; never fails on time. The `time` step imports neither TensorFlow nor
vialguard, so that it runs under the GPU machine's own Python.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

PATCHES_PER_ACQUISITION = 60
PAPER_MS_PER_PATCH = 0.1689      # paper, Table 1: a 60-patch batch's time / 60, on an RTX A4500
SLOT_MS = 500.0
KEPT_ELEMENTS = 4096             # initialisers up to this size travel as they are
MANIFEST = "stripped.json"


# --------------------------------------------------------------------------------------
# prepare: here, with TensorFlow
# --------------------------------------------------------------------------------------

def strip_weights(model: Any, kept_elements: int = KEPT_ELEMENTS) -> dict[str, dict[str, float]]:
    """Empty every float initialiser larger than ``kept_elements``; return each one's mean and std.

    The graph keeps each tensor's name, type and shape, so the GPU side can refill it with
    values of the same scale (random weights of the same spread time the same as trained ones).
    """
    from onnx import numpy_helper

    stripped: dict[str, dict[str, float]] = {}
    for tensor in model.graph.initializer:
        if tensor.data_type != 1 or int(np.prod(tensor.dims)) <= kept_elements:  # 1: FLOAT
            continue
        values = numpy_helper.to_array(tensor)
        stripped[tensor.name] = {"mean": float(values.mean()), "std": float(values.std())}
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    return stripped


def reconstruction_of(inspector: Any) -> Any:
    """The inspector graph cut at the decoder's output: the generator's X -> X_hat alone.

    The paper's per-patch time is the network's; the served graph adds the SSIM maps, the
    strip reference and the scores. Cut from the inspector rather than converted on its own:
    tf2onnx ran out of 21 GB converting the whole 123 M-parameter generator (its second
    encoder, which inference never runs, included).
    """
    import onnx
    from onnx.utils import Extractor

    decoder = [node.output[0] for node in inspector.graph.node if node.name.startswith("decoder")]
    if not decoder:
        raise ValueError("no decoder node in the inspector graph")
    typed = onnx.shape_inference.infer_shapes(inspector)  # the cut's output needs its type
    return Extractor(typed).extract_model([inspector.graph.input[0].name], [decoder[-1]])


def prepare(out: Path, profile_name: str) -> None:
    """Convert the profile's inspector (as `benchmarks.inference` does) and cut its reconstruction out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnx

    from benchmarks.inference import _timing_local_model
    from trainer.config import get_profile
    from trainer.export import convert_inspector
    from trainer.inspector import build_inspector
    from trainer.networks.generator import build_generator

    profile = get_profile(profile_name)
    keras.utils.set_random_seed(0)
    generator = build_generator(profile)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"profile": profile.name, "patch_size": profile.patch_size,
                                "parameters": int(generator.count_params()), "graphs": {}}
    started = time.perf_counter()
    inspector = onnx.load_from_string(convert_inspector(build_inspector(generator, _timing_local_model(
        profile.patch_size)), profile.patch_size))
    convert_s = time.perf_counter() - started
    del generator
    for part, proto in (("reconstruction", reconstruction_of(inspector)), ("inspector", inspector)):
        stripped = strip_weights(proto)
        onnx.save(proto, out / f"{part}.onnx")
        weights = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == 1)
        manifest["graphs"][part] = {"file": f"{part}.onnx", "convert_s": round(convert_s, 1), "parameters": weights,
                                    "stripped": stripped}
        print(f"{part}: {len(stripped)} weight tensors stripped, "
              f"{(out / f'{part}.onnx').stat().st_size / 1e6:.1f} MB left", flush=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


# --------------------------------------------------------------------------------------
# time: on the GPU machine, with PyTorch
# --------------------------------------------------------------------------------------

def matrix_flops_per_patch(model: Any, batch: int = PATCHES_PER_ACQUISITION) -> float:
    """Multiply-adds x 2 of every Conv, ConvTranspose and MatMul, per patch, from inferred shapes.

    Over a measured time it gives the rate the GPU reached, against its fp16 ceiling; the
    elementwise rest of the graph (SSIM, scores) is memory-bound and not counted.
    """
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    shapes.update({t.name: list(t.dims) for t in inferred.graph.initializer})
    flops = 0.0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul"):
            continue
        x, w = (shapes.get(name) for name in node.input[:2])
        y = shapes.get(node.output[0])
        if not x or not w or not y or 0 in x + w + y:
            continue
        if node.op_type == "Conv":          # w [Cout, Cin/g, kh, kw]: each output takes Cin/g*kh*kw
            flops += 2 * float(np.prod(y)) * float(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":  # w [Cin, Cout/g, kh, kw]: each input feeds Cout/g*kh*kw
            flops += 2 * float(np.prod(x)) * float(np.prod(w[1:]))
        else:
            flops += 2 * float(np.prod(y)) * x[-1]
    return flops / batch


def refill_weights(model: Any, stripped: dict[str, dict[str, float]], seed: int = 0) -> None:
    """Give each stripped initialiser normal values of its recorded mean and spread."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    for i, tensor in enumerate(model.graph.initializer):
        stats = stripped.get(tensor.name)
        if stats is None:
            continue
        values = rng.normal(stats["mean"], stats["std"], tuple(tensor.dims)).astype(np.float32)
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values, tensor.name))


def alias_newer_op_versions(model: Any) -> list[str]:
    """Let onnx2torch convert an op at a newer opset version with its converter of the last older one.

    Opset 16 and 17 changed operators such as GreaterOrEqual only by the types they accept
    (bfloat16), so the older converter computes the same thing. Returns the aliases made.
    """
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    made = []
    for op_type in sorted({node.op_type for node in model.graph.node}):
        since = defs.get_schema(op_type, max_inclusive_version=opset).since_version
        wanted = OperationDescription("", op_type, since)
        older = sorted((d.version, d) for d in _CONVERTER_REGISTRY if d.operation_type == op_type and d.domain == ""
                       and d.version < since)
        if wanted not in _CONVERTER_REGISTRY and older:
            _CONVERTER_REGISTRY[wanted] = _CONVERTER_REGISTRY[older[-1][1]]
            made.append(f"{op_type}-{since} as {op_type}-{older[-1][0]}")
    return made


def register_missing_converters() -> None:
    """onnx2torch has no ReverseSequence (tf.reverse becomes one in tf2onnx): add it."""
    import torch
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node

    class ReverseSequence(torch.nn.Module, OnnxToTorchModule):
        """ONNX ReverseSequence: reverse the first lens[b] steps of the time axis of each batch entry b."""

        def __init__(self, batch_axis: int, time_axis: int) -> None:
            super().__init__()
            self.batch_axis, self.time_axis = batch_axis, time_axis

        def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
            steps = x.shape[self.time_axis]
            t = torch.arange(steps, device=x.device).unsqueeze(1)              # [T, 1]
            lens = lens.to(torch.long).unsqueeze(0)                               # [1, B]
            index = torch.where(t < lens, lens - 1 - t, t)                        # [T, B]
            moved = x.movedim((self.time_axis, self.batch_axis), (0, 1))          # [T, B, ...]
            index = index.reshape(index.shape + (1,) * (moved.dim() - 2)).expand_as(moved)
            return torch.gather(moved, 0, index).movedim((0, 1), (self.time_axis, self.batch_axis))

    @add_converter(operation_type="ReverseSequence", version=10)   # its only version
    def _(node, graph):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return OperationConverterResult(
            torch_module=ReverseSequence(node.attributes.get("batch_axis", 1), node.attributes.get("time_axis", 0)),
            onnx_mapping=onnx_mapping_from_node(node))


def crop_after_conv_transpose(model: Any) -> int:
    """Rewrite each ConvTranspose with unequal begin/end pads as one without pads and a crop.

    tf2onnx writes Keras' stride-2 'same' transposed convolution with pads [0, 0, 1, 1]
    (nothing taken off the top and left, one row and column off the bottom and right); a
    ConvTranspose's pads remove output, so the same output is the unpadded one cropped,
    which onnx2torch converts. Returns how many nodes were rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    rewritten = 0
    nodes = []
    for node in model.graph.node:
        pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), None)
        if node.op_type != "ConvTranspose" or not pads or pads[:2] == pads[2:]:
            nodes.append(node)
            continue
        begin, end = pads[:2], pads[2:]
        for attribute in node.attribute:
            if attribute.name == "pads":
                attribute.CopyFrom(helper.make_attribute("pads", [0, 0, 0, 0]))
        full = f"{node.output[0]}__uncropped"
        cropped = node.output[0]
        node.output[0] = full
        stem = f"{node.name}__crop"
        for name, values in (("starts", begin), ("ends", [-e if e else 2**62 for e in end]), ("axes", [2, 3])):
            model.graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), f"{stem}_{name}"))
        nodes += [node, helper.make_node("Slice", [full, f"{stem}_starts", f"{stem}_ends", f"{stem}_axes"],
                                         [cropped], name=stem)]
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return rewritten


def _device_ms(call: Any, runs: int, warmup: int, device: str) -> np.ndarray:
    """Per-run milliseconds after warmup: by CUDA events (the GPU's own clock) on a GPU."""
    import torch

    for _ in range(warmup):
        call()
    samples = []
    if device != "cuda":  # a CPU dry run of this script: wall clock
        for _ in range(runs):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1e3)
        return np.array(samples)
    torch.cuda.synchronize()
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return np.array(samples)


def _figures(samples: np.ndarray, batch: int, flops_per_patch: float = 0.0) -> dict[str, float]:
    median = float(np.median(samples))
    return {"matrix_tflop_per_s": round(flops_per_patch * batch / (median / 1e3) / 1e12, 1), "batch": batch, "runs": int(samples.size), "median_ms": round(median, 3),
            "p99_ms": round(float(np.percentile(samples, 99)), 3), "min_ms": round(float(samples.min()), 3),
            "ms_per_patch": round(median / batch, 4), "patches_per_s": round(batch / median * 1e3, 1)}


def time_graph(path: Path, stripped: dict[str, dict[str, float]], runs: int, warmup: int,
               batches: list[int], device: str = "cuda") -> dict[str, Any]:
    """One graph: eager fp32, eager fp16 autocast, and fp16 autocast replayed as a CUDA graph."""
    import onnx
    import onnx2torch
    import onnxruntime as ort
    import torch

    model = onnx.load(str(path))
    refill_weights(model, stripped)
    crop_after_conv_transpose(model)
    for i, node in enumerate(model.graph.node):  # onnx2torch names submodules after nodes: "And" would be `self.and`
        node.name = f"{node.op_type.lower()}_{i}"
    aliases = alias_newer_op_versions(model)
    flops = matrix_flops_per_patch(model)
    names = [o.name for o in model.graph.output]
    side = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    net = onnx2torch.convert(model).eval().to(device)
    rng = np.random.default_rng(0)
    patches = rng.uniform(0, 1, (PATCHES_PER_ACQUISITION, side, side, 1)).astype(np.float32)
    result: dict[str, Any] = {"outputs": names, "modes": {}, "op_aliases": aliases,
                              "matrix_gflop_per_patch": round(flops / 1e9, 3)}

    def run(x: torch.Tensor, half: bool) -> Any:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.float16 if device == "cuda" else torch.bfloat16,
                                                    enabled=half):
            return net(x)

    # Agreement: ONNX Runtime (CPU, float32: what Triton's cpu config serves) against PyTorch fp32
    # and fp16 on one whole acquisition (the inspector's strip reference groups 60 patches).
    probe = patches
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = dict(zip(names, session.run(names, {model.graph.input[0].name: probe})))
    for half in (False, True):
        got = run(torch.from_numpy(probe).to(device), half)
        got = got if isinstance(got, (tuple, list)) else [got]
        diffs = {}
        for name, value in zip(names, got):
            ref = reference[name]
            diffs[name] = {"max_abs_diff": float(np.abs(value.float().cpu().numpy() - ref).max()),
                           "ref_abs_max": float(np.abs(ref).max())}
        result["fp16_vs_ort" if half else "fp32_vs_ort"] = diffs
    del session

    for batch in batches:
        if batch % PATCHES_PER_ACQUISITION and path.stem != "reconstruction":
            continue  # the strip reference compares the 3 frames x 5 vials of whole acquisitions
        x = torch.from_numpy(np.resize(patches, (batch, side, side, 1))).to(device)
        for mode, half in (("fp32", False), ("fp16_autocast", True)):
            result["modes"][f"{mode}_b{batch}"] = _figures(_device_ms(lambda: run(x, half), runs, warmup, device), batch,
                                                           flops)
            print(f"  {path.stem} {mode} batch {batch}: {result['modes'][f'{mode}_b{batch}']}", flush=True)
        if device != "cuda":
            continue
        try:  # launch overhead off: one CUDA graph replays the whole acquisition's kernels
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    run(x, True)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run(x, True)
            key = f"fp16_autocast_cudagraph_b{batch}"
            result["modes"][key] = _figures(_device_ms(graph.replay, runs, warmup, device), batch, flops)
            print(f"  {path.stem} fp16 CUDA graph batch {batch}: {result['modes'][key]}", flush=True)
        except Exception as error:  # noqa: BLE001 - a graph that cannot be captured is a finding, not a failure
            result["modes"][f"fp16_autocast_cudagraph_b{batch}"] = {"error": f"{type(error).__name__}: {error}"[:300]}
            print(f"  {path.stem} CUDA graph capture failed: {error}"[:300], flush=True)
        del x
        if device == "cuda":
            torch.cuda.empty_cache()
    if device == "cuda":
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def time_on_gpu(model_dir: Path, runs: int, warmup: int, batches: list[int], json_out: Path | None,
                device: str = "cuda") -> dict[str, Any]:
    """Every prepared graph, timed; the figures are written to ``json_out`` after each graph."""
    import torch

    register_missing_converters()
    if device == "cuda":  # let cuDNN pick each convolution's fastest algorithm, as TensorRT picks tactics
        torch.backends.cudnn.benchmark = True
    manifest = json.loads((model_dir / MANIFEST).read_text())
    figures: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)", "torch": torch.__version__, "profile": manifest["profile"],
        "parameters": manifest["parameters"], "paper_ms_per_patch": PAPER_MS_PER_PATCH, "graphs": {},
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "fp32_conv_tf32": torch.backends.cudnn.allow_tf32,
        "fp32_matmul_tf32": torch.backends.cuda.matmul.allow_tf32}
    print(f"{figures['gpu']}, torch {figures['torch']}; profile {manifest['profile']} "
          f"({manifest['parameters'] / 1e6:.0f} M parameters)", flush=True)
    for part, entry in manifest["graphs"].items():
        figures["graphs"][part] = time_graph(model_dir / entry["file"], entry["stripped"], runs, warmup, batches, device)
        if json_out:
            json_out.write_text(json.dumps(figures, indent=1))
    for line in summary_lines(figures):
        print(line)
    return figures


def summary_lines(figures: dict[str, Any]) -> list[str]:
    """Per graph and mode, one acquisition's time against the slot and the paper's per-patch figure."""
    lines = [f"{figures['profile']} profile on {figures['gpu']} (paper: {PAPER_MS_PER_PATCH} ms per patch on an RTX A4500)"]
    for part, graph in figures["graphs"].items():
        lines.append(f"  {part}: {graph['matrix_gflop_per_patch']} GFLOP per patch in convolutions and matrix products")
        for mode, f in graph["modes"].items():
            if "error" in f:
                lines.append(f"  {part:9s} {mode:32s} not measured: {f['error'][:120]}")
                continue
            lines.append(f"  {part:9s} {mode:32s} median {f['median_ms']:8.2f} ms, p99 {f['p99_ms']:8.2f} ms, "
                         f"{f['matrix_tflop_per_s']:6.1f} TFLOP/s, {f['ms_per_patch']:.4f} ms/patch (x{PAPER_MS_PER_PATCH / f['ms_per_patch']:.2f} the paper's "
                         f"speed), {100 * f['median_ms'] * PATCHES_PER_ACQUISITION / f['batch'] / SLOT_MS:.1f} % of "
                         "the slot per acquisition")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="here: convert and strip the weights")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--profile", default="paper")
    t = sub.add_parser("time", help="on the GPU machine: refill, convert to PyTorch, time")
    t.add_argument("--model", type=Path, required=True)
    t.add_argument("--runs", type=int, default=50)
    t.add_argument("--warmup", type=int, default=5)
    t.add_argument("--batches", default="60,1", help="patches per call (60: one acquisition)")
    t.add_argument("--json", type=Path, default=None)
    t.add_argument("--device", default="cuda", help="cuda; cpu only to dry-run this script on a small profile")
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.profile)
    else:
        time_on_gpu(args.model, args.runs, args.warmup, [int(b) for b in args.batches.split(",")], args.json, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
