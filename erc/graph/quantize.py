"""Int8 inference of a trained graph model on CPU: its dense products in 8-bit integers.

A test pass of the GraphSmile-style model is almost all dense products: every layer of every
graph stack multiplies the ``N x hidden`` node features by two ``hidden x hidden`` weights
(``X W`` before propagation, the branch Linear after), then the shared fusion Linear and the
modality projections. :func:`quantize_int8` returns a copy of a trained model in which those
``nn.Linear`` modules are torch's dynamically quantized Linear (``torch.ao.quantization
.quantize_dynamic``): weights stored as int8 with one scale per output channel, activations
quantized per call (one scale per tensor, from the tensor's own range), products accumulated in
int32 by the CPU's int8 kernels (x86: FBGEMM / oneDNN, VNNI where the processor has it; Arm:
QNNPACK), the result dequantized to float32. Propagation (the sparse ``A_hat`` product), the
batch norm and the heads stay float32.

Activations get one scale per product, from the whole batch: int8 outputs depend a little on which
dialogues share a batch (IEMOCAP test split, batch 1 against 32: class probabilities within 0.02, 99 % of
predicted classes the same), where the float32 model's do not.

Measured on the 31 IEMOCAP test dialogues (``bench/bench_graph_epoch.py --int8``; accuracy of
saved models: ``bench/graph_int8_accuracy.py``): see docs/graph_speed.md. This is inference only:
the copy has no gradients for the quantized layers, so ``forward`` refuses training mode with
autograd on, and it runs without autocast (its activations are float32).

``torch.ao.quantization`` is deprecated in recent torch releases in favour of ``torchao`` (whose CPU
int8 path is fast only under ``torch.compile``); while torch ships it, this module uses it, and a
torch without it gets a one-line error naming the option, not a traceback.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from erc.graph.config import QUANTIZE


def _quantize_dynamic():
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:   # a torch release that dropped eager-mode dynamic quantization
        raise RuntimeError(f"quantize int8: this torch ({torch.__version__}) has no "
                           f"torch.ao.quantization.quantize_dynamic ({exc}); run with quantize 'none'") from None
    return quantize_dynamic, per_channel_dynamic_qconfig


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of the graph model ``model`` whose large Linear layers run in int8 (module docstring).

    Quantized: every ``nn.Linear`` of ``model.graphs`` (each layer's ``W`` and branch), of
    ``model.modal_fusion`` and of ``model.proj``. Kept in float32: the heads (small, and their
    logits are what is reported) and everything that is not a Linear. ``model`` is not changed.
    The copy is in eval mode and carries ``quantized = "int8"``.
    """
    for name, p in model.named_parameters():
        if p.device.type != "cpu":
            raise ValueError(f"quantize int8: the model must be on the CPU (parameter {name} is on {p.device}); "
                             "int8 inference is a CPU path")
        if p.dtype != torch.float32:
            raise ValueError(f"quantize int8: expected a float32 model, parameter {name} is {p.dtype}")
    quantize_dynamic, qconfig = _quantize_dynamic()
    q = copy.deepcopy(model).eval()
    with warnings.catch_warnings():   # torch.ao's own deprecation notices (module docstring), for this call only
        warnings.simplefilter("ignore")
        for attr in ("graphs", "modal_fusion", "proj"):
            setattr(q, attr, quantize_dynamic(getattr(q, attr), {nn.Linear: qconfig}, dtype=torch.qint8))
    q.quantized = "int8"
    return q


def maybe_quantize(model: nn.Module, quantize: str) -> nn.Module:
    """``model`` itself for ``"none"``, its int8 copy for ``"int8"`` (:func:`quantize_int8`)."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize: expected one of {QUANTIZE}, got {quantize!r}")
    return model if quantize == "none" else quantize_int8(model)
