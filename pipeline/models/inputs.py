"""Input contracts: what each model input must look like, checked with errors that name the slot.

Deliberately free of model code (torch and the standard library only): the exported artifact's
loader checks requests with the same specs, read back from its JSON manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor


class InputError(ValueError):
    """A batch or request does not match the model's input contract."""


@dataclass(frozen=True)
class InputSpec:
    """One input tensor: its shape in symbols ("B" rows, "L" sequence length) and allowed values.

    `dtypes` lists the accepted dtypes; the first is canonical: what an exported program takes.
    """

    name: str
    shape: tuple[str | int, ...]
    dtypes: tuple[str, ...]
    max_value: int | str | None = None  # inclusive; a symbol means that dimension's size
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(name=data["name"], shape=tuple(data["shape"]), dtypes=tuple(data["dtypes"]),
                   max_value=data.get("max_value"), description=data.get("description", ""))

    def expected(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{'/'.join(self.dtypes)}[{dims}] ({self.description})" if self.description else \
            f"{'/'.join(self.dtypes)}[{dims}]"


def canonical(inputs: Mapping[str, Tensor], specs: Sequence[InputSpec]) -> dict[str, Tensor]:
    """Exactly the spec'd inputs, in spec order, each cast to its canonical dtype."""
    return {s.name: inputs[s.name].to(getattr(torch, s.dtypes[0])) for s in specs}


def check_inputs(inputs: Mapping[str, Any], specs: Sequence[InputSpec], *, what: str,
                 dims: Mapping[str, int] | None = None,
                 max_dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """Check presence, dtype, shape and id range of every spec'd input; return the bound dims.

    `dims` pre-binds symbols (a request's user side has B = 1); `max_dims` caps them (L <= L_max).
    Keys the specs do not name (labels, ids for logging) are ignored.
    """
    bound = dict(dims or {})
    missing = [s for s in specs if s.name not in inputs]
    if missing:
        wanted = "; ".join(f"{s.name!r}: {s.expected()}" for s in missing)
        raise InputError(f"{what}: missing input(s) {wanted}. Got keys {sorted(inputs)}")
    for spec in specs:
        value = inputs[spec.name]
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{what}: input {spec.name!r} is a {type(value).__name__}; "
                             f"expected a tensor {spec.expected()}")
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in spec.dtypes:
            raise InputError(f"{what}: input {spec.name!r} has dtype {dtype}; expected {spec.expected()}")
        if value.dim() != len(spec.shape):
            raise InputError(f"{what}: input {spec.name!r} has shape {tuple(value.shape)}; "
                             f"expected {spec.expected()}")
        for axis, (symbol, size) in enumerate(zip(spec.shape, value.shape)):
            size = int(size)
            if isinstance(symbol, int):
                if size != symbol:
                    raise InputError(f"{what}: input {spec.name!r} has shape {tuple(value.shape)}; "
                                     f"expected {spec.expected()} (axis {axis} must be {symbol})")
                continue
            if symbol in bound and bound[symbol] != size:
                raise InputError(f"{what}: input {spec.name!r} has shape {tuple(value.shape)}, axis {axis} "
                                 f"is {size} but {symbol} = {bound[symbol]} from the other inputs; "
                                 f"expected {spec.expected()}")
            if max_dims and symbol in max_dims and size > max_dims[symbol]:
                raise InputError(f"{what}: input {spec.name!r} has {symbol} = {size}; at most "
                                 f"{max_dims[symbol]} is supported")
            bound[symbol] = size
    for spec in specs:
        value = inputs[spec.name]
        if spec.max_value is None or value.numel() == 0:
            continue
        upper = bound[spec.max_value] if isinstance(spec.max_value, str) else spec.max_value
        low, high = int(value.min()), int(value.max())
        if low < 0 or high > upper:
            raise InputError(f"{what}: input {spec.name!r} has values in [{low}, {high}]; expected "
                             f"[0, {upper}] ({spec.description or spec.name})")
    return bound
