"""Which imbalance strategies a job trains: its own, or for ``"auto"`` a small set.

Torch-free, so the API can count a job's candidates when it queues it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.engine.config import (
    AsymmetricLoss,
    BCELoss,
    FixedThresholds,
    FocalLoss,
    ImbalanceConfig,
    MaxF1Thresholds,
    PosWeightConfig,
    RepeatFactorSampler,
    TrainingConfig,
    WeightedBCELoss,
)


@dataclass(frozen=True)
class Candidate:
    name: str  # e.g. "focal+max_f1"
    config: TrainingConfig  # imbalance resolved, never "auto"


def candidates(config: TrainingConfig) -> list[Candidate]:
    """The strategies a job trains: its own, or for ``"auto"`` a small validated set.

    Every auto candidate picks per-label thresholds for maximum validation F1 (with the
    small-support guard); plain BCE at a fixed 0.5 is kept as the baseline, so auto is
    never worse than plain BCE on the split it is judged on.
    """
    if config.imbalance != "auto":
        return [Candidate(strategy_name(config.imbalance), config)]
    tuned = MaxF1Thresholds()
    strategies = [
        ImbalanceConfig(loss=BCELoss(), thresholds=FixedThresholds()),
        ImbalanceConfig(loss=BCELoss(), thresholds=tuned),
        ImbalanceConfig(
            loss=WeightedBCELoss(pos_weight=PosWeightConfig(strategy="sqrt_neg_pos")),
            thresholds=tuned,
        ),
        ImbalanceConfig(loss=FocalLoss(gamma=2.0), thresholds=tuned),
        ImbalanceConfig(loss=AsymmetricLoss(), thresholds=tuned),
        ImbalanceConfig(
            loss=BCELoss(), sampler=RepeatFactorSampler(), thresholds=tuned
        ),
    ]
    return [
        Candidate(strategy_name(s), config.model_copy(update={"imbalance": s}))
        for s in strategies
    ]


def strategy_name(imbalance: ImbalanceConfig) -> str:
    parts = [imbalance.loss.type]
    if imbalance.sampler.type != "none":
        parts.append(imbalance.sampler.type)
    parts.append(imbalance.thresholds.mode)
    return "+".join(parts)
