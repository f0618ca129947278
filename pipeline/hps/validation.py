"""Input checks at the parameter server's boundary: errors name the input, position and rule broken."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_KEY_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


def flatten_keys(inputs: Sequence[object], num_keys: int) -> np.ndarray:
    """All ids of a step's inputs as one int64 array (masked-out positions dropped), after validation.

    Each input is a tensor or array of ids, or an (ids, mask) pair with a boolean mask of the same shape.
    """
    parts = []
    for i, item in enumerate(inputs):
        ids, mask = item if isinstance(item, tuple) else (item, None)
        keys = _as_numpy(ids, f"input {i}")
        if keys.dtype not in _KEY_DTYPES:
            raise TypeError(f"input {i}: ids must be int64 or int32, got {keys.dtype}")
        if mask is not None:
            mask_np = _as_numpy(mask, f"input {i} mask")
            if mask_np.dtype != np.bool_:
                raise TypeError(f"input {i}: mask must be bool, got {mask_np.dtype}")
            if mask_np.shape != keys.shape:
                raise ValueError(f"input {i}: mask shape {list(mask_np.shape)} != ids shape {list(keys.shape)}")
            keys = keys[mask_np]
        keys = keys.reshape(-1).astype(np.int64, copy=False)
        check_key_range(keys, num_keys, f"input {i}")
        parts.append(keys)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def check_key_range(keys: np.ndarray, num_keys: int, where: str) -> None:
    if len(keys) == 0:
        return
    low, high = int(keys.min()), int(keys.max())
    if low < 0:
        at = int(np.argmax(keys < 0))
        raise ValueError(f"{where}: key {low} at flat position {at} is negative; keys lie in [0, {num_keys})")
    if high >= num_keys:
        at = int(np.argmax(keys >= num_keys))
        raise ValueError(f"{where}: key {int(keys[at])} at flat position {at} is outside [0, {num_keys}) "
                         "(HPSConfig.num_keys)")


def _as_numpy(value: object, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{where}: expected a torch.Tensor or numpy array of ids, got {type(value).__name__}")
