"""Models: training, evaluation and gates, the registry, safe model files, scoring."""
