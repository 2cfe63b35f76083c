"""Weight initialisation shared by the blocks (GPT-2 style: normal(0, std), zero bias)."""

import torch.nn as nn


def init_linear(layer: nn.Linear, std: float) -> None:
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
