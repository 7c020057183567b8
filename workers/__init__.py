"""Job execution: the Celery app, its tasks, and the plain-PyTorch training engine."""
