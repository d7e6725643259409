"""MoCo-style momentum contrast for the image side (CoFT+'s momentum contrastive term).

A momentum encoder (a copy of the trained image side whose weights follow the online one as an
exponential moving average, `m · θ_k + (1 − m) · θ_q` after every optimiser step) encodes a second
view of each image into a key; the online encoder's view is the query. The loss is InfoNCE over the
positive key and a queue of the last `queue_size` keys (He et al. 2020): `−log exp(q·k⁺/τ) /
(exp(q·k⁺/τ) + Σ_queue exp(q·k⁻/τ))`. The queue starts as random unit vectors, as MoCo's does.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


class MomentumContrast(torch.nn.Module):
    def __init__(self, online: torch.nn.Module, queue_size: int = 1024, momentum: float = 0.999,
                 temperature: float = 0.07, seed: int = 0):
        super().__init__()
        self.encoder = copy.deepcopy(online).requires_grad_(False)
        self.encoder.eval()
        self.momentum, self.temperature = momentum, temperature
        device = next(online.parameters()).device
        dim = online.visual.output_dim
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim, generator=generator), dim=1).to(device))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long, device=device))
        self._keys: list[torch.Tensor] = []

    def train(self, mode: bool = True) -> "MomentumContrast":
        super().train(mode)
        self.encoder.eval()
        return self

    def loss(self, query: torch.Tensor, key_input: torch.Tensor) -> torch.Tensor:
        """InfoNCE of L2-normalised queries against the momentum encoder's keys of `key_input`."""
        with torch.no_grad():
            key = F.normalize(self.encoder(key_input).float(), dim=-1)
        self._keys.append(key)
        positive = (query * key).sum(dim=1, keepdim=True)
        negative = query @ self.queue.T
        logits = torch.cat([positive, negative], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))

    @torch.no_grad()
    def update(self, online: torch.nn.Module) -> None:
        """After the optimiser step: the EMA of the online weights, and this step's keys enqueued."""
        for moving, current in zip(self.encoder.parameters(), online.parameters()):
            moving.mul_(self.momentum).add_(current.detach(), alpha=1 - self.momentum)
        for key in self._keys:
            for start in range(0, len(key), len(self.queue)):
                chunk = key[start:start + len(self.queue)]
                index = (self.pointer + torch.arange(len(chunk), device=chunk.device)) % len(self.queue)
                self.queue[index] = chunk
                self.pointer.copy_((self.pointer + len(chunk)) % len(self.queue))
        self._keys = []
