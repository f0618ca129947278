"""W8A16 for the student: int8 weights (symmetric, per output channel), 16-bit activations.

Quantization is a module swap (`quantize_w8a16`), not a fork of the model: every `nn.Linear`
becomes an `Int8Linear` and every `PerTokenFFN` an `Int8PerTokenFFN`. Embeddings stay as they are
(they belong to the embedding provider).

Kernels, chosen per call site because the two sides of a request differ:

- once-per-request work (user tokens, one row): torch's maintained int8 weight-pack matmul,
  ``torch.ops.aten._weight_int8pack_mm(x_bf16, w_int8, scales_bf16)``, which dequantizes inside
  the kernel, so the weights cross memory as int8. This part is memory-bound.
- per-candidate work (N rows): dequantize to the activation dtype, then one dense batched GEMM;
  at large M the int8 kernel is slower than a dense 16-bit GEMM (see docs/models.md). The choice is
  static (by module and token slice), so the exported program with dynamic N keeps it.

Activations are bf16 where the CPU has native bf16 (AVX512-BF16 or AMX); elsewhere fp32, since the
int8 kernel's only vectorised path takes bf16 and emulated bf16 is slower than fp32.

The int8 kernel's AVX512 loop reads K in steps of 16 with aligned loads and has no tail: with K
(input features) not a multiple of 16 it returns garbage or crashes (torch 2.13). Such layers take
the dequantize path instead.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.rankmixer import PerTokenFFN
from pipeline.models.student import UGSepStudent

INT8_KERNEL_K_MULTIPLE = 16


def fast_activation_dtype() -> torch.dtype:
    """bf16 where the CPU computes it natively, else fp32."""
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else torch.float32


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """int8 weights and fp32 scales for `weight` [..., out, in]: scale = max|row| / 127, q = round(w / scale).

    Symmetric (no zero point), so dequantization is one multiply; |w - q · scale| <= scale / 2.
    """
    scale = weight.detach().abs().amax(dim=-1).clamp_min(1e-12) / 127
    quantized = torch.round(weight.detach() / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return quantized, scale.to(torch.float32)


def dequantize_per_channel(quantized: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """The weights `quantize_per_channel` encodes, in `dtype`."""
    return quantized.to(dtype) * scale.to(dtype).unsqueeze(-1)


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights; `per_request` picks the small-M int8 kernel (see module docstring)."""

    def __init__(self, linear: nn.Linear, *, per_request: bool, activation_dtype: torch.dtype) -> None:
        super().__init__()
        quantized, scale = quantize_per_channel(linear.weight)
        self.register_buffer("weight_int8", quantized)
        self.register_buffer("scale", scale.to(activation_dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.activation_dtype = activation_dtype
        self.use_int8_kernel = (per_request and activation_dtype == torch.bfloat16
                                and linear.in_features % INT8_KERNEL_K_MULTIPLE == 0)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(self.activation_dtype)
        if self.use_int8_kernel:
            out = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scale)
        else:
            out = F.linear(rows, dequantize_per_channel(self.weight_int8, self.scale, self.activation_dtype))
        out = out.to(torch.float32).view(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


class Int8PerTokenFFN(nn.Module):
    """PerTokenFFN with int8 per-token weights; tokens below `per_request_tokens` use the int8 kernel."""

    def __init__(self, ffn: PerTokenFFN, *, per_request_tokens: int, activation_dtype: torch.dtype) -> None:
        super().__init__()
        # Stored [T, out, in] like nn.Linear, the layout the int8 kernel takes.
        w1, s1 = quantize_per_channel(ffn.w1.transpose(1, 2).contiguous())
        w2, s2 = quantize_per_channel(ffn.w2.transpose(1, 2).contiguous())
        for name, value in (("w1_int8", w1), ("w2_int8", w2), ("s1", s1.to(activation_dtype)),
                            ("s2", s2.to(activation_dtype)), ("b1", ffn.b1.detach().clone()),
                            ("b2", ffn.b2.detach().clone())):
            self.register_buffer(name, value)
        self.n_tokens = w1.shape[0]
        self.activation_dtype = activation_dtype
        dim, hidden = ffn.w1.shape[1:]
        kernel_fits = activation_dtype == torch.bfloat16 and not (dim % INT8_KERNEL_K_MULTIPLE
                                                                  or hidden % INT8_KERNEL_K_MULTIPLE)
        self.per_request_tokens = per_request_tokens if kernel_fits else 0

    def forward(self, x: Tensor, tokens: slice = slice(None)) -> Tensor:
        chosen = range(self.n_tokens)[tokens]
        if chosen.stop <= self.per_request_tokens:
            return self._per_token_kernel(x, chosen)
        dtype = self.activation_dtype
        by_token = x.transpose(0, 1).to(dtype)
        w1 = dequantize_per_channel(self.w1_int8[tokens], self.s1[tokens], dtype)
        hidden = F.gelu(torch.bmm(by_token, w1.transpose(1, 2)).to(torch.float32) + self.b1[tokens].unsqueeze(1))
        w2 = dequantize_per_channel(self.w2_int8[tokens], self.s2[tokens], dtype)
        out = torch.bmm(hidden.to(dtype), w2.transpose(1, 2)).to(torch.float32) + self.b2[tokens].unsqueeze(1)
        return out.transpose(0, 1)

    def _per_token_kernel(self, x: Tensor, chosen: range) -> Tensor:
        # One kernel call per token and matrix; the elementwise work runs once over all tokens.
        tokens = slice(chosen.start, chosen.stop)
        rows = x.to(torch.bfloat16)
        hidden = torch.stack([torch.ops.aten._weight_int8pack_mm(rows[:, i].contiguous(), self.w1_int8[t], self.s1[t])
                              for i, t in enumerate(chosen)], dim=1)
        hidden = F.gelu(hidden.to(torch.float32) + self.b1[tokens]).to(torch.bfloat16)
        out = torch.stack([torch.ops.aten._weight_int8pack_mm(hidden[:, i].contiguous(), self.w2_int8[t], self.s2[t])
                           for i, t in enumerate(chosen)], dim=1)
        return out.to(torch.float32) + self.b2[tokens]


def quantize_w8a16(student: UGSepStudent, activation_dtype: torch.dtype | None = None) -> UGSepStudent:
    """A W8A16 copy of `student` (the original is untouched), for inference only."""
    dtype = activation_dtype or fast_activation_dtype()
    quantized = copy.deepcopy(student).eval()
    per_request_tokens = quantized.blocks[0].n_user_tokens  # 0 without the mask: nothing is per request
    for parent_name, parent in list(quantized.named_modules()):
        for name, child in list(parent.named_children()):
            path = f"{parent_name}.{name}" if parent_name else name
            if isinstance(child, nn.Linear):
                per_request = any(path.startswith(p) for p in student.per_request_modules)
                full_precision = any(path.startswith(p) for p in student.full_precision_modules)
                activation = torch.float32 if full_precision else dtype
                setattr(parent, name, Int8Linear(child, per_request=per_request, activation_dtype=activation))
            elif isinstance(child, PerTokenFFN):
                setattr(parent, name, Int8PerTokenFFN(child, per_request_tokens=per_request_tokens,
                                                      activation_dtype=dtype))
    return quantized.requires_grad_(False)
