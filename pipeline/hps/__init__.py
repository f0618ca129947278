"""Hierarchical parameter server (SSD → CPU memory → device) for sparse embeddings larger than memory.

Typical use in a training process::

    server = ParameterServer(HPSConfig(dim=64, ssd_path=..., memory_capacity_bytes=...))
    embed = PSEmbedding(server, slots=["user", "item", "category"])
    for batch in server.pipeline(loader, keys_of=lambda b: [b["ids"]]):
        loss = loss_fn(model(batch), batch["label"])
        loss.backward()          # pushes the sparse gradients; the server applies its optimizer
        dense_optimizer.step()
    server.checkpoint(directory, dense={"model": model.state_dict()})
"""

from pipeline.hps.checkpoint import CorruptSnapshot, has_snapshot, latest_snapshot, snapshot_info
from pipeline.hps.config import HPSConfig
from pipeline.hps.device_tier import DeviceTier, WorkingSet
from pipeline.hps.embedding import PSEmbedding, PSEmbeddingBag, bag_keys
from pipeline.hps.memory_tier import MemoryTier, MemoryTierFull
from pipeline.hps.server import ParameterServer
from pipeline.hps.ssd_tier import CorruptSegment, SSDTier
from pipeline.hps.stats import HPSStats

__all__ = [
    "CorruptSegment", "CorruptSnapshot", "DeviceTier", "HPSConfig", "HPSStats", "MemoryTier", "MemoryTierFull", "PSEmbedding",
    "PSEmbeddingBag", "ParameterServer", "SSDTier", "WorkingSet", "bag_keys", "has_snapshot", "latest_snapshot",
    "snapshot_info",
]
