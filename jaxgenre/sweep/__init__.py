"""Hyperparameter sweeps on Optuna (`python -m jaxgenre.sweep`, the CLI in jaxgenre.tools.sweep).

  space     search spaces: config keys -> distributions, checked against the config
  study     the study's storage, the objective (one training run per trial), dead workers'
            trials retried, one worker's loop
  results   results.csv / .md, best.py or the Pareto front's configs, PNG plots
"""
