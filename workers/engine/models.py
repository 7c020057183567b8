"""Model families, built by name from the config's ``model.type``."""

from __future__ import annotations

from typing import Literal

from torch import nn

from workers.engine.config import MLPConfig

# How the hidden layers are normalized: from model.batch_norm and train.batchnorm.
Norm = Literal["none", "batch", "group"]

# GroupNorm statistics come from the channels of one sample. In an MLP each channel is
# a single number per sample (a CNN channel has H*W of them), so a group needs enough
# channels for a stable mean and variance: at least 16 per group, at most 32 groups
# (the group count GroupNorm was introduced with). Widths under 32 get one group,
# which is LayerNorm with a per-channel affine.
MIN_CHANNELS_PER_GROUP = 16
MAX_GROUPS = 32


def group_count(width: int) -> int:
    """Groups for a GroupNorm over ``width`` channels: the largest divisor of
    ``width`` that is at most 32 and leaves at least 16 channels per group."""
    for groups in range(min(MAX_GROUPS, width // MIN_CHANNELS_PER_GROUP), 1, -1):
        if width % groups == 0:
            return groups
    return 1


class MLP(nn.Module):
    """``features [batch, n_features] -> logits [batch, n_labels]``.

    Each hidden layer is Linear -> (norm) -> ReLU -> (Dropout).
    """

    def __init__(
        self,
        n_features: int,
        n_labels: int,
        hidden_sizes: list[int],
        dropout: float,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if norm != "none":
                layers.append(_norm_layer(norm, hidden))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, n_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, features):
        return self.net(features)


def _norm_layer(norm: Norm, width: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(width)
    # A one-channel group normalizes a single number to 0, which would cut the layer
    # off from its input; a 1-wide layer is left unnormalized instead.
    if width == 1:
        return nn.Identity()
    return nn.GroupNorm(group_count(width), width)


def build_model(
    config: MLPConfig,
    n_features: int,
    n_labels: int,
    *,
    batchnorm: Literal["keep", "freeze", "group_norm"] = "keep",
) -> nn.Module:
    """Build the network the config names; new families register a branch here.

    ``batchnorm`` is ``train.batchnorm``: with ``model.batch_norm`` on, 'group_norm'
    swaps every BatchNorm1d for a GroupNorm. 'keep' and 'freeze' build the same
    network ('freeze' is applied by the trainer). A saved model must be rebuilt with
    the same value, since the two norms hold different tensors.
    """
    if config.type == "mlp":
        norm: Norm = "none"
        if config.batch_norm:
            norm = "group" if batchnorm == "group_norm" else "batch"
        return MLP(
            n_features, n_labels, list(config.hidden_sizes), config.dropout, norm
        )
    raise ValueError(f"unknown model type {config.type!r}")
