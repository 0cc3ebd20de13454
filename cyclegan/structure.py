"""DINO-struct: how far a translation moved away from its input's structure, per image.

The structure distance img2img-turbo reports beside FID (from Splice, Tumanyan et al. 2022): each
image through DINO's ViT-B/8 (timm's `vit_base_patch8_224` with the weights of
`dino_vitbase8_pretrain.pth`), resized to 224 x 224 (bicubic, antialiased) and normalised with
ImageNet's mean and std; the keys of the last block's self-attention (all heads, the CLS token
included) give a token-by-token cosine self-similarity matrix; the distance between an input and
its translation is the mean squared difference of their matrices. Zero for an unchanged image,
growing as the layout changes; colours and textures alone move it little.

The weights file is never downloaded: it is found at an explicit path (`--structure_weights`),
$CYCLEGAN_DINO_WEIGHTS, or torch's hub cache (where `torch.hub.load("facebookresearch/dino:main",
"dino_vitb8")` puts it), else `MissingWeightsError` says where to put which file.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from .errors import UserError
from .metric_names import DINO_FILE, DINO_WEIGHTS_ENV

DINO_URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/" + DINO_FILE
ARCHITECTURE = "vit_base_patch8_224"  # timm's name of DINO's ViT-B/8
SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFINITION = f"dino-struct:{ARCHITECTURE}:last-keys-selfsim-mse@{SIZE}"  # in the fingerprint


class MissingStructureWeightsError(UserError):
    """The DINO weights file for the structure distance cannot be found."""


def find_dino_weights(path: str | Path | None = None) -> Path:
    """DINO's ViT-B/8 weights file: `path`, else $CYCLEGAN_DINO_WEIGHTS, else torch's hub cache."""
    where = (
        ("--structure_weights", path)
        if path
        else (f"${DINO_WEIGHTS_ENV}", os.environ.get(DINO_WEIGHTS_ENV))
    )
    if where[1]:
        found = Path(where[1]).expanduser()
        if not found.is_file():
            raise MissingStructureWeightsError(
                f"{where[0]} {found}: file not found; it should be {DINO_FILE} ({DINO_URL})"
            )
        return found
    cached = Path(torch.hub.get_dir()) / "checkpoints" / DINO_FILE
    if cached.is_file():
        return cached
    raise MissingStructureWeightsError(
        f"dino_struct needs DINO's ViT-B/8 weights {DINO_FILE}, which are never downloaded "
        f"behind your back: fetch {DINO_URL} and put it at {cached} (torch's hub cache, from "
        f"$TORCH_HOME), or anywhere and point ${DINO_WEIGHTS_ENV} or --structure_weights at it; "
        f"or leave dino_struct out of the metrics"
    )


class StructureDistance:
    """DINO-struct per image pair (see the module docstring)."""

    def __init__(self, net: torch.nn.Module, sha256: str):
        self.net, self.sha256 = net.eval(), sha256
        self.device = next(net.parameters()).device
        self._keys: list[torch.Tensor] = []
        net.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, out: self._keys.append(out))

    @torch.no_grad()
    def self_similarity(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW images -> N x T x T cosine self-similarity of the last block's keys."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(
            images.to(self.device).float() / 255, size=(SIZE, SIZE), mode="bicubic",
            align_corners=False, antialias=True,
        )  # fmt: skip
        mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)
        self._keys.clear()
        self.net.forward_features((x - mean) / std)
        qkv = self._keys.pop()  # N x T x 3D: queries, keys, values of every head side by side
        dim = qkv.shape[-1] // 3
        keys = torch.nn.functional.normalize(qkv[..., dim : 2 * dim].float(), dim=-1)
        return keys @ keys.transpose(1, 2)

    def __call__(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """The distance of each translation (`outputs`) from its input, as float64 on the CPU."""
        a, b = self.self_similarity(inputs), self.self_similarity(outputs)
        return (a - b).pow(2).flatten(1).mean(1).double().cpu()


def load_structure(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    architecture: str = ARCHITECTURE,
) -> StructureDistance:
    """Find (`find_dino_weights`) and load DINO's ViT into timm's VisionTransformer."""
    import timm

    weights = find_dino_weights(path)
    data = weights.read_bytes()
    hint = f"it should be {DINO_FILE} from {DINO_URL}"
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"{weights}: not a readable weights file ({err.__class__.__name__}); {hint}"
        ) from None
    net = timm.create_model(architecture, pretrained=False, num_classes=0)
    try:
        net.load_state_dict(state.get("teacher", state) if isinstance(state, dict) else state)
    except (RuntimeError, AttributeError, TypeError) as err:
        raise UserError(
            f"{weights}: does not fit DINO's ViT ({str(err).splitlines()[0][:200]}); {hint}"
        ) from None
    return StructureDistance(net.to(device), hashlib.sha256(data).hexdigest())
