"""Search spaces: config keys mapped to distributions, in a small Python file like a config.

  # configs/sweeps/classifier.py
  from jaxgenre.sweep.space import choice, integer, log_uniform, uniform

  def get_space():
      return {
          "optim.learning_rate": log_uniform(1e-4, 1e-2),
          "model.dropout": uniform(0.0, 0.5),
          "batch_size": choice([16, 32]),
          "model.width": choice([0.35, 1.0], when={"model.name": "mobilenet_v2"}),
      }

`when` makes a key conditional: it is sampled only in trials whose config has those values
(after the keys before it are applied), so it never shows up in a trial it does not apply to.
`check` refuses, before any trial runs, a key the config does not have (listing the keys that
look like it) and a distribution that does not fit the key's type.
"""
import copy
import dataclasses
import difflib
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from jaxgenre.core import errors
from jaxgenre.run import config_checks


class SpaceError(errors.UserError, ValueError):
    """The search space cannot be searched: the message names the key, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    log: bool = False
    when: dict | None = None


@dataclasses.dataclass(frozen=True)
class Integer:
    low: int
    high: int
    log: bool = False
    when: dict | None = None


@dataclasses.dataclass(frozen=True)
class Choice:
    values: tuple
    when: dict | None = None


Distribution = Uniform | Integer | Choice


def uniform(low: float, high: float, when: dict | None = None) -> Uniform:
    """A float drawn evenly from [low, high]."""
    return Uniform(float(low), float(high), False, when)


def log_uniform(low: float, high: float, when: dict | None = None) -> Uniform:
    """A float drawn evenly in log scale from [low, high] (learning rates, weight decay)."""
    return Uniform(float(low), float(high), True, when)


def integer(low: int, high: int, log: bool = False, when: dict | None = None) -> Integer:
    """An integer from [low, high], evenly or (log=True) in log scale."""
    return Integer(int(low), int(high), log, when)


def choice(values: Sequence, when: dict | None = None) -> Choice:
    """One of `values` (numbers, strings, booleans or None)."""
    return Choice(tuple(values), when)


def load(path: str) -> dict[str, Distribution]:
    """`get_space()` of the Python file at `path`."""
    if not os.path.isfile(path):
        raise SpaceError(f"--space {path} is not a file: pass a search space file, e.g. "
                         "configs/sweeps/classifier.py.")
    spec = importlib.util.spec_from_file_location("jaxgenre_sweep_space", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_space", None)):
        raise SpaceError(f"--space {path} has no get_space() returning {{config key: "
                         "distribution}}.")
    space = module.get_space()
    if not space:
        raise SpaceError(f"--space {path}: get_space() returned no keys to search.")
    return space


def check(space: dict, config: ml_collections.ConfigDict) -> None:
    """Refuses keys `config` lacks and distributions that do not fit a key's type (a float
    range for an integer key, a choice of strings for a number, an empty or inverted range)."""
    keys = config_checks.flatten(config)
    for key, dist in space.items():
        if key not in keys:
            near = difflib.get_close_matches(key, list(keys), n=5, cutoff=0.5)
            section = sorted(k for k in keys if k.rpartition(".")[0] == key.rpartition(".")[0])
            raise SpaceError(f"The space's key {key!r} is not in the config; "
                             f"{'did you mean ' + ', '.join(near) + '? ' if near else ''}"
                             f"keys there: {', '.join(section or sorted(keys))}.")
        if not isinstance(dist, Distribution):
            raise SpaceError(f"{key}: {dist!r} is not a distribution; use uniform, log_uniform, "
                             "integer or choice from jaxgenre.sweep.space.")
        _check_type(key, dist, keys[key])
        later = list(space)[list(space).index(key) + 1:]
        for other in dist.when or {}:
            if other not in keys:
                raise SpaceError(f"{key}: its condition names {other!r}, which is not a config "
                                 "key.")
            if other in later:
                raise SpaceError(f"{key}: its condition names {other!r}, which the space samples "
                                 "after it; list that key first.")


def _check_type(key: str, dist: Distribution, current: Any) -> None:
    def refuse(what: str):
        raise SpaceError(f"{key} is {type(current).__name__} ({current!r}) in the config, but "
                         f"the space gives it {what}.")

    if isinstance(dist, Choice):
        if not dist.values:
            raise SpaceError(f"{key}: choice() needs at least one value.")
        for value in dist.values:
            if current is not None and value is not None and not _same_kind(value, current):
                refuse(f"the choice {value!r}")
        return
    if dist.low >= dist.high or (dist.log and dist.low <= 0):
        raise SpaceError(f"{key}: the range [{dist.low}, {dist.high}] must have low < high"
                         f"{' and low > 0 (log scale)' if dist.log else ''}.")
    if isinstance(dist, Uniform) and not (isinstance(current, float) or current is None):
        refuse("a float range (use integer() or choice() for it)")
    if isinstance(dist, Integer) and (isinstance(current, bool)
                                      or not isinstance(current, (int, type(None)))):
        refuse("an integer range")


def _same_kind(value, current) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(current, bool)
    if isinstance(current, int):
        return isinstance(value, int)
    if isinstance(current, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(current))


def suggest(trial, space: dict, config: ml_collections.ConfigDict) -> dict:
    """The trial's values {key: value} (an Optuna trial's suggestions), keys in the space's
    order; a conditional key only where its condition holds for the values so far."""
    values = {}
    for key, dist in space.items():
        if not _applies(dist, values, config):
            continue
        if isinstance(dist, Choice):
            values[key] = trial.suggest_categorical(key, list(dist.values))
        elif isinstance(dist, Integer):
            values[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        else:
            values[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return values


def config_point(space: dict, config: ml_collections.ConfigDict) -> dict:
    """The config's own values {key: value} for the space's keys (a conditional key only where
    its condition holds): the hand-tuned point, to measure as the study's first trial. Refuses a
    value the space cannot propose, naming the key and its range."""
    point = {}
    for key, dist in space.items():
        if not _applies(dist, point, config):
            continue
        value = _get(config, key)
        fits = value in dist.values if isinstance(dist, Choice) else \
            value is not None and dist.low <= value <= dist.high
        if not fits:
            allowed = list(dist.values) if isinstance(dist, Choice) else \
                f"[{dist.low}, {dist.high}]"
            raise SpaceError(f"--start_from_config: the config's {key} = {value!r} is outside "
                             f"the space's {allowed}; widen the space or leave the flag out.")
        point[key] = value
    return point


def apply(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """A copy of `config` with `values` {dotted key: value} set (an int where the key is a
    float is widened, as --config.KEY=3 would be)."""
    out = copy.deepcopy(config)  # keeps its field references (frontend.n_mels -> model.n_mels)
    for key, value in values.items():
        *parents, name = key.split(".")
        node = out
        for part in parents:
            node = node[part]
        current = node[name]
        node[name] = float(value) if isinstance(current, float) and isinstance(value, int) \
            and not isinstance(value, bool) else value
    return out


def _applies(dist: Distribution, values: dict, config: ml_collections.ConfigDict) -> bool:
    """Whether `dist`'s `when` condition holds for `values` so far (else the config's)."""
    return not dist.when or all(values.get(k, _get(config, k)) == v for k, v in dist.when.items())


def _get(config: ml_collections.ConfigDict, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node
