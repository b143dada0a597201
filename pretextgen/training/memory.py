"""Memories of negatives for the contrastive recipes: more negatives than one batch holds.

- ``MomentumQueue``: MoCo (He et al. 2020; v2, Chen et al. 2020). A key encoder, the exponential
  moving average of the query encoder's weights, and a first-in first-out queue of its last
  ``size`` keys. Memory: ``size x dim`` float32 (65,536 x 128 is 32 MiB) and one more copy of the
  encoder.
- ``MemoryBank``: the instance memory bank of Wu et al. 2018. One vector per sample index, moved
  towards each new embedding of that sample (``v <- normalize(m v + (1 - m) f)``, m = 0.5 as the
  paper); each step reads ``negatives`` random entries. Memory: ``samples x dim`` float32 (50,000 x
  128 is 24 MiB).

Both are buffers of the recipe, so ``checkpoint.pt`` carries them and ``--resume`` continues with
the same queue and bank. Their updates happen inside the recipe's ``loss`` (as MoCo's ``forward``
does), after the loss has read them; under torchrun every rank adds every rank's keys.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .losses import gather


class MomentumQueue(nn.Module):
    """MoCo's key encoder (a copy of ``encoder``, not trained by the optimiser) and its queue of
    ``size`` L2-normalised keys of ``dim``, first filled with random unit vectors as MoCo's.
    ``keys(x)`` moves the key encoder towards ``encoder`` (``momentum``: 0.999 in MoCo at batch
    256) and encodes ``x`` with batch norm over ``shuffle`` random parts of the batch (MoCo's
    shuffling BN: a key must not share batch statistics with its own query)."""

    def __init__(self, encoder: nn.Module, size: int, dim: int, momentum: float = 0.99, shuffle: int = 2):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.momentum, self.shuffle = float(momentum), int(shuffle)
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        # the group id of each key (-1: a random start vector), so that a query's own earlier keys
        # are not its negatives
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def keys(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for k, q in zip(self.encoder.parameters(), encoder.parameters()):
            k.mul_(self.momentum).add_(q.detach(), alpha=1.0 - self.momentum)
        self.encoder.train(encoder.training)
        order = torch.randperm(len(x), device=x.device)
        parts = [self.encoder(x[idx]) for idx in order.chunk(max(1, min(self.shuffle, len(x) // 2)))]
        out = torch.empty((len(x), parts[0].shape[1]), device=x.device, dtype=parts[0].dtype)
        out[order] = torch.cat(parts)
        return F.normalize(out.float(), dim=1)

    def negatives(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, their group ids) as they are now: copies, so the loss's graph never sees them change."""
        return self.queue.clone(), self.ids.clone()

    @torch.no_grad()
    def push(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Add every rank's ``keys`` (and their group ``ids``), overwriting the oldest."""
        keys, ids = gather(keys.float()), gather(ids)
        size = len(self.queue)
        slots = ((self.pointer + torch.arange(len(keys), device=keys.device)) % size)[-size:]
        self.queue[slots], self.ids[slots] = keys[-size:], ids[-size:]
        self.pointer.copy_((self.pointer + len(keys)) % size)


class MemoryBank(nn.Module):
    """Wu et al. 2018's bank of one L2-normalised ``dim`` vector per sample index, ``size`` of them
    (``resize`` sets it once the build's sample count is known; a checkpoint's bank loads at its own
    size). ``draw(n)`` picks n random entries (torch's generator: the checkpoint holds its state)."""

    def __init__(self, dim: int, momentum: float = 0.5):
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("vectors", torch.zeros(0, dim))

    def resize(self, size: int) -> None:
        self.vectors = F.normalize(torch.randn(size, self.vectors.shape[1], device=self.vectors.device), dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "vectors"
        if key in state_dict and state_dict[key].shape != self.vectors.shape:
            self.vectors = torch.empty_like(state_dict[key], device=self.vectors.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def draw(self, n: int, device) -> torch.Tensor:
        return torch.randint(len(self.vectors), (min(n, len(self.vectors)),), device=device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, f: torch.Tensor) -> None:
        """Move every rank's samples' entries towards their new embeddings ``f`` (rows of ``index``;
        a sample's views averaged first)."""
        index, f = gather(index), gather(F.normalize(f.float(), dim=1))
        slots, inverse = index.unique(return_inverse=True)
        mean = torch.zeros(len(slots), f.shape[1], device=f.device).index_add_(0, inverse, f)
        mean = F.normalize(mean, dim=1)
        self.vectors[slots] = F.normalize(self.momentum * self.vectors[slots] + (1 - self.momentum) * mean, dim=1)
