"""W8A16: quantize → dequantize bounds, kernel choice, and the quantized student's accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models.quantize import (
    Int8Linear,
    Int8PerTokenFFN,
    dequantize_per_channel,
    quantize_per_channel,
    quantize_w8a16,
)
from pipeline.models.rankmixer import PerTokenFFN
from pipeline.models.student import UGSepStudent
from pipeline.models.synthetic import random_request

BF16_EPS = 2.0 ** -8  # relative rounding of bf16


def test_quantize_dequantize_error_is_at_most_half_a_step_per_channel():
    weight = torch.randn(64, 48) * torch.logspace(-3, 1, 64).unsqueeze(1)  # rows of very different scale
    weight[5] = 0.0
    quantized, scale = quantize_per_channel(weight)
    assert quantized.dtype == torch.int8 and int(quantized.abs().max()) == 127
    torch.testing.assert_close(scale, weight.abs().amax(dim=1).clamp_min(1e-12) / 127)
    error = (dequantize_per_channel(quantized, scale) - weight).abs()
    assert torch.all(error <= scale.unsqueeze(1) / 2 * (1 + 1e-5))
    assert torch.all(dequantize_per_channel(quantized, scale)[5] == 0)


def test_symmetric_quantization_keeps_signs_and_extremes():
    weight = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    quantized, scale = quantize_per_channel(weight)
    assert quantized.tolist() == [[-127, -64, 0, 64, 127]]
    torch.testing.assert_close(dequantize_per_channel(quantized, scale)[0, [0, 4]], torch.tensor([-2.0, 2.0]))


def _linear_error_bound(x: torch.Tensor, weight: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Weight rounding (scale / 2 per weight) plus bf16 rounding of activations, scales and outputs."""
    _, scale = quantize_per_channel(weight)
    weight_error = x.abs() @ scale.expand(weight.shape[1], -1) / 2
    rounding = 3 * BF16_EPS * (x.abs() @ (weight.abs() + scale.unsqueeze(1)).T) + BF16_EPS * reference.abs()
    return weight_error + rounding


@pytest.mark.parametrize("per_request", [True, False])
def test_int8_linear_stays_within_its_error_bound(per_request):
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 64)
    quantized = Int8Linear(linear, per_request=per_request, activation_dtype=torch.bfloat16)
    assert quantized.use_int8_kernel == per_request
    with torch.no_grad():
        reference = x @ linear.weight.T
        error = (quantized(x) - linear.bias - reference).abs()
    assert torch.all(error <= _linear_error_bound(x, linear.weight, reference))


def test_int8_kernel_is_skipped_when_k_is_not_a_multiple_of_16():
    linear = nn.Linear(24, 16)
    quantized = Int8Linear(linear, per_request=True, activation_dtype=torch.bfloat16)
    assert not quantized.use_int8_kernel
    x = torch.randn(1, 24)
    with torch.no_grad():
        reference = x @ linear.weight.T
        error = (quantized(x) - linear.bias - reference).abs()
    assert torch.all(error <= _linear_error_bound(x, linear.weight, reference))


def test_fp32_activations_never_use_the_bf16_kernel():
    ffn = PerTokenFFN(4, 32, 2)
    quantized = Int8PerTokenFFN(ffn, per_request_tokens=3, activation_dtype=torch.float32)
    assert quantized.per_request_tokens == 0
    x = torch.randn(2, 4, 32)
    with torch.no_grad():
        torch.testing.assert_close(quantized(x), ffn(x), rtol=0.05, atol=0.05)


def test_per_token_kernel_and_dequantized_path_agree():
    ffn = PerTokenFFN(6, 32, 4)
    kernel = Int8PerTokenFFN(ffn, per_request_tokens=4, activation_dtype=torch.bfloat16)
    x = torch.randn(1, 4, 32)
    with torch.no_grad():
        by_kernel = kernel(x, slice(0, 4))
        dequantized = kernel(torch.cat([x, torch.zeros(1, 2, 32)], dim=1))[:, :4]
        torch.testing.assert_close(by_kernel, dequantized, rtol=0.02, atol=0.02)
        torch.testing.assert_close(by_kernel, ffn(x, slice(0, 4)), rtol=0.05, atol=0.05)


# The dtype is named, not taken from `fast_activation_dtype`: the int8 kernel path exists only for bf16
# activations, and whether this CPU computes bf16 natively (AVX512-BF16, AMX) must not decide what is tested.
@pytest.mark.parametrize("activation_dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_quantized_student_is_a_module_swap_close_to_fp32(student_config, rng, activation_dtype):
    student = UGSepStudent(student_config).eval()
    quantized = quantize_w8a16(student, activation_dtype)
    assert isinstance(student.blocks[0].ffn, PerTokenFFN)  # the original is untouched
    assert not any(isinstance(m, (nn.Linear, PerTokenFFN)) for m in quantized.modules())
    kernel = activation_dtype == torch.bfloat16  # fp32 activations dequantize: no int8 kernel anywhere
    assert quantized.blocks[0].ffn.per_request_tokens == (student_config.n_user_tokens if kernel else 0)
    assert quantized.compensation.key.use_int8_kernel == kernel and not quantized.heads.serving[0].use_int8_kernel
    user, candidates = random_request(student_config, 32, rng)
    with torch.no_grad():
        difference = (quantized.score(user, candidates) - student.score(user, candidates)).abs().max()
    assert 0 < difference < 0.05
