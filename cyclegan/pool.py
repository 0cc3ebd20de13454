"""The history of generated images shown to the discriminators (Shrivastava et al.)."""

from __future__ import annotations

import torch


class ImagePool:
    """Until full, store and return each new image. Once full, return the new image
    with probability 1/2, else a random stored one, which the new image replaces.

    The pool owns its random generator so that its choices are reproducible and
    travel with the training state.
    """

    def __init__(self, pool_size: int, seed: int = 0):
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        images = images.detach()
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.generator).item() > 0.5:
                slot = int(torch.randint(len(self.images), (1,), generator=self.generator))
                out.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        stored = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {
            "pool_size": self.pool_size,
            "images": stored,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.pool_size = state["pool_size"]
        self.images = (
            [img.unsqueeze(0).to(device) for img in state["images"]]
            if state["images"].numel()
            else []
        )
        self.generator.set_state(state["generator"])
