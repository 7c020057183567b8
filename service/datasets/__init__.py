"""Datasets: uploaded tables, validated into float32 features and 0/1 labels."""
