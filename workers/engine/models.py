"""Model families, built by name from the config's ``model.type``."""

from __future__ import annotations

from torch import nn

from workers.engine.config import MLPConfig


class MLP(nn.Module):
    """``features [batch, n_features] -> logits [batch, n_labels]``."""

    def __init__(
        self, n_features: int, n_labels: int, hidden_sizes: list[int], dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, n_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, features):
        return self.net(features)


def build_model(config: MLPConfig, n_features: int, n_labels: int) -> nn.Module:
    """Build the network the config names; new families register a branch here."""
    if config.type == "mlp":
        return MLP(n_features, n_labels, list(config.hidden_sizes), config.dropout)
    raise ValueError(f"unknown model type {config.type!r}")
