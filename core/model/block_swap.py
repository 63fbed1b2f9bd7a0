"""Block swap (kohya's `blocks_to_swap`, ai-toolkit's layer offloading) for 10-16 GB cards: the frozen
base weights of the last N single blocks live in (pinned) system memory and are on the training
device only while their block runs, in the forward pass and again in the backward pass, where the
checkpointed block is recomputed.

How, without touching autograd's saved tensors: a swapped block's base modules hold their CPU
`master` Parameters; `fetch` puts a *new* Parameter with a device copy in each module for the run of
the block (as ComfyUI's weight patching does), `evict` puts the master back. Autograd keeps the device
copy it saved for as long as it needs it, then frees it. Swapped blocks are always checkpointed, so
the forward saves nothing inside them and the recomputation fetches again. On CUDA the next swapped
block is copied ahead on a side stream while the current one computes.

The LoRA (trainable) parameters never move: the optimizer updates them on the device.
"""

from __future__ import annotations

import torch
from torch import nn


class BlockSwap:
    def __init__(self, blocks: list[nn.Module], count: int, device: torch.device):
        if not 0 <= count <= len(blocks):
            raise ValueError(f"blocks_to_swap={count} must be between 0 and the {len(blocks)} single blocks of this model")
        self.device = torch.device(device)
        self.blocks = blocks[len(blocks) - count:] if count else []
        self._index = {id(b): i for i, b in enumerate(self.blocks)}
        self._masters: dict[int, list[tuple[nn.Module, str, nn.Parameter]]] = {}
        self._ready: dict[int, object] = {}  # block index -> (copies, event) prefetched
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._last = -1  # the block fetched last: forward runs up the list, the backward down
        pin = self.device.type == "cuda"
        for i, block in enumerate(self.blocks):
            entries = []
            for module in block.modules():
                for name, param in list(module._parameters.items()):
                    if param is None or param.requires_grad:
                        continue  # LoRA weights stay on the device
                    master = param.detach().to("cpu")
                    master = nn.Parameter(master.pin_memory() if pin else master, requires_grad=False)
                    module._parameters[name] = master
                    entries.append((module, name, master))
            self._masters[i] = entries

    def holds(self, block: nn.Module) -> bool:
        return id(block) in self._index

    def run(self, block: nn.Module, *args):
        """Run `block` with its weights on the device (the function the checkpoint records and replays)."""
        i = self._index[id(block)]
        self._fetch(i)
        try:
            return block(*args)
        finally:
            self._evict(i)

    def _copies(self, i: int) -> list:
        return [master.to(self.device, non_blocking=True) for _, _, master in self._masters[i]]

    def _fetch(self, i: int) -> None:
        if self._stream is None:
            copies = self._copies(i)
        else:
            copies, event = self._ready.pop(i, (None, None))
            if copies is None:
                copies = self._copies(i)
            else:
                torch.cuda.current_stream(self.device).wait_event(event)
            self._prefetch(i + 1 if i > self._last else i - 1)
        self._last = i
        for (module, name, _), tensor in zip(self._masters[i], copies):
            module._parameters[name] = nn.Parameter(tensor, requires_grad=False)

    def _prefetch(self, i: int) -> None:
        if not 0 <= i < len(self.blocks) or i in self._ready:
            return
        with torch.cuda.stream(self._stream):
            copies = self._copies(i)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._ready[i] = (copies, event)

    def _evict(self, i: int) -> None:
        for module, name, master in self._masters[i]:
            module._parameters[name] = master
