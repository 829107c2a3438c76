"""Where the train step's time goes, convolution by convolution, against PyTorch's.

  python -m benchmarks.conv_layers [--repeats 5] [--model resnet18|mobilenet_v2] [--json OUT]

Every distinct 2D convolution of the model at the train-step benchmark's shapes (batch 32, a
[130, 128, 1] log-mel crop), each pass timed on its own, ours and PyTorch's (channels_last,
its faster layout here; eager, one op) side by side:
  forward, input gradient (d loss / d x), kernel gradient (d loss / d kernel).
Ours is what the model runs on CPU: `models.conv.conv2d` (XLA's forward and input gradient,
the im2col kernel gradient), `models.depthwise` for depthwise layers, a [N, C_in] x [C_in, C_out]
product for 1x1 stride-1 layers (`layers.ConvBN`). PyTorch's is `aten.convolution` and
`aten.convolution_backward` (oneDNN). Times are medians of `--repeats`, the six passes of a
layer timed in turn within each repeat; the table's last
columns weigh each layer by how often the model uses it, so its sum is the convolutions' share
of a step, and the ratio (PyTorch time / ours, > 1: we are faster) says which passes lose.
"""
import argparse
import functools
import json
import statistics
import time

import jax
import numpy as np
import torch

from benchmarks.common import machine
from jaxgenre.models.ops import conv, depthwise

# (input [B, H, W, C_in], kernel (kh, kw), C_out, stride, depthwise, uses per step, name)
_RESNET18 = (
    ((32, 130, 128, 1), (7, 7), 64, 2, False, 1, "stem 7x7/2"),
    ((32, 33, 32, 64), (3, 3), 64, 1, False, 4, "stage1 3x3"),
    ((32, 33, 32, 64), (3, 3), 128, 2, False, 1, "stage2 3x3/2"),
    ((32, 33, 32, 64), (1, 1), 128, 2, False, 1, "stage2 1x1/2"),
    ((32, 17, 16, 128), (3, 3), 128, 1, False, 3, "stage2 3x3"),
    ((32, 17, 16, 128), (3, 3), 256, 2, False, 1, "stage3 3x3/2"),
    ((32, 17, 16, 128), (1, 1), 256, 2, False, 1, "stage3 1x1/2"),
    ((32, 9, 8, 256), (3, 3), 256, 1, False, 3, "stage3 3x3"),
    ((32, 9, 8, 256), (3, 3), 512, 2, False, 1, "stage4 3x3/2"),
    ((32, 9, 8, 256), (1, 1), 512, 2, False, 1, "stage4 1x1/2"),
    ((32, 5, 4, 512), (3, 3), 512, 1, False, 3, "stage4 3x3"),
)
# The largest of each kind in MobileNetV2 (width 1.0): stem, an early expand / depthwise /
# project triple (the biggest feature maps), and the last 1x1.
_MOBILENET_V2 = (
    ((32, 130, 128, 1), (3, 3), 32, 2, False, 1, "stem 3x3/2"),
    ((32, 65, 64, 32), (3, 3), 32, 1, True, 1, "block0 dw 3x3"),
    ((32, 65, 64, 16), (1, 1), 96, 1, False, 1, "block1 expand 1x1"),
    ((32, 65, 64, 96), (3, 3), 96, 2, True, 1, "block1 dw 3x3/2"),
    ((32, 33, 32, 24), (1, 1), 144, 1, False, 2, "block2 expand 1x1"),
    ((32, 33, 32, 144), (3, 3), 144, 1, True, 1, "block2 dw 3x3"),
    ((32, 33, 32, 144), (1, 1), 24, 1, False, 1, "block2 project 1x1"),
    ((32, 5, 4, 320), (1, 1), 1280, 1, False, 1, "last 1x1"),
)
MODELS = {"resnet18": _RESNET18, "mobilenet_v2": _MOBILENET_V2}
PASSES = ("forward", "input_grad", "kernel_grad")


def _ours(x_shape, k, c_out, stride, is_depthwise):
    """(forward, input gradient, kernel gradient) as jitted functions of (x, kernel, g)."""
    if is_depthwise:
        fwd = functools.partial(depthwise.depthwise_conv3x3, stride=stride)
    elif k == (1, 1) and stride == 1:
        def fwd(x, kernel):  # layers.ConvBN's pointwise Linear
            return (x.reshape(-1, x.shape[-1]) @ kernel[0, 0]).reshape(*x.shape[:-1], c_out)
    else:
        fwd = functools.partial(conv.conv2d, stride=stride)
    vjp = lambda x, kernel, g: jax.vjp(fwd, x, kernel)[1](g)
    return (jax.jit(lambda x, kernel, g: fwd(x, kernel)),
            jax.jit(lambda x, kernel, g: vjp(x, kernel, g)[0]),
            jax.jit(lambda x, kernel, g: vjp(x, kernel, g)[1]))


def _torch(k, stride, groups):
    """PyTorch's (forward, input gradient, kernel gradient) with its symmetric padding."""
    pad = [k[0] // 2, k[1] // 2]
    args = ([stride, stride], pad, [1, 1], False, [0, 0], groups)

    def fwd(x, w, g):
        return torch.ops.aten.convolution(x, w, None, *args)

    def backward(mask):
        return lambda x, w, g: torch.ops.aten.convolution_backward(
            g, x, w, None, *args, mask)[mask.index(True)]
    return fwd, backward([True, False, False]), backward([False, True, False])


def measure(layers, repeats: int) -> list[dict]:
    rows = []
    for x_shape, k, c_out, stride, is_dw, uses, name in layers:
        c_in = x_shape[-1]
        k_shape = (*k, 1, c_in) if is_dw else (*k, c_in, c_out)
        x = jax.random.normal(jax.random.key(0), x_shape)
        kernel = jax.random.normal(jax.random.key(1), k_shape) * 0.1
        ours = _ours(x_shape, k, c_out, stride, is_dw)
        g = jax.random.normal(jax.random.key(2), ours[0](x, kernel, None).shape)
        # PyTorch: NCHW tensors in channels_last memory, OIHW weights ([C, 1, kh, kw] depthwise),
        # copied so that neither side reads the other's buffers.
        tx, tk, tg = (_tensor(x, (0, 3, 1, 2)), _tensor(kernel, (3, 2, 0, 1)),
                      _tensor(g, (0, 3, 1, 2)))
        groups = c_in if is_dw else 1
        runs = {("ours", p): functools.partial(_blocking, fn, x, kernel, g)
                for p, fn in zip(PASSES, ours)}
        runs.update({("torch", p): functools.partial(fn, tx, tk, tg)
                     for p, fn in zip(PASSES, _torch(k, stride, groups))})
        with torch.no_grad():
            times = _interleaved(runs, repeats)
        row = {"layer": name, "uses": uses,
               **{f"{side}_ms": {p: times[side, p] for p in PASSES} for side in ("ours", "torch")}}
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _tensor(a: jax.Array, order: tuple) -> torch.Tensor:
    """A copy of `a` as a PyTorch tensor with axes `order`, in channels_last memory."""
    return torch.tensor(np.array(a)).permute(*order).contiguous(memory_format=torch.channels_last)


def _interleaved(runs: dict, repeats: int) -> dict:
    """{key: median ms} of each callable, timed in turn within every repeat (after one warm-up
    call each), so that the machine's drift and one side's after-effects (caches, threads
    still spinning) fall on both sides alike."""
    for run in runs.values():
        run()
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {key: 1e3 * statistics.median(t) for key, t in times.items()}


def _blocking(fn, *args):
    return jax.block_until_ready(fn(*args))


def _line(row) -> str:
    cells = [f"{row['ours_ms'][p]:7.1f} {row['torch_ms'][p]:7.1f} "
             f"{row['torch_ms'][p] / row['ours_ms'][p]:5.2f}x" for p in PASSES]
    return f"{row['layer']:20s} x{row['uses']}  " + "  ".join(cells)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    print(f"machine: {machine()}; jax {jax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {a.model}, median of {a.repeats}")
    print(f"{'':25s}" + "".join(f"{p + ' (ours / torch ms, ratio)':29s}" for p in PASSES))
    rows = measure(MODELS[a.model], a.repeats)
    totals = {side: {p: sum(r["uses"] * r[f"{side}_ms"][p] for r in rows) for p in PASSES}
              for side in ("ours", "torch")}
    print(_line({"layer": "weighted sum", "uses": 1, "ours_ms": totals["ours"],
                 "torch_ms": totals["torch"]}))
    ours_all, torch_all = sum(totals["ours"].values()), sum(totals["torch"].values())
    print(f"all passes, weighted: ours {ours_all:.0f} ms, torch {torch_all:.0f} ms, "
          f"ratio {torch_all / ours_all:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "model": a.model, "rows": rows, "totals": totals},
                      f, indent=2)


if __name__ == "__main__":
    main()
