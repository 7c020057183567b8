"""The training engine: plain PyTorch, no Celery, no database.

It takes tensors and a validated :class:`~workers.engine.config.TrainingConfig`,
trains, and reports through callbacks. Importing this package does not import torch;
import the submodules that need it directly.
"""
