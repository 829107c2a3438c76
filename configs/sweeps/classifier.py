"""Search space for a genre classifier (any model family):

  python -m jaxgenre.sweep --config configs/mobilenet.py --space configs/sweeps/classifier.py \
      --study_dir runs/sweep_mobilenet --trials 20 --timeout 2h

The optimiser's strength, regularisation and augmentation: what the README's recipes were
tuned on by hand. The objective defaults to the config's best_metric (val_accuracy).
"""
from jaxgenre.sweep.space import choice, log_uniform, uniform


def get_space():
    return {
        "optim.learning_rate": log_uniform(1e-4, 1e-2),
        "optim.weight_decay": log_uniform(1e-3, 1e-1),
        "optim.label_smoothing": uniform(0.0, 0.2),
        "augment.mixup_alpha": choice([0.0, 0.2, 0.4]),
        "model.dropout": uniform(0.0, 0.5),
    }
