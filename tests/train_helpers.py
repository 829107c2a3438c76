"""Tiny training runs for tests: a small config, a CLI runner, checkpoint readers."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def overrides(data_dir: str, **extra) -> dict:
    """A BatchNorm model on 1 s crops of the tiny dataset: seconds per step on a CPU."""
    values = {"data.name": "fma/small", "data.data_dir": data_dir, "data.crop_seconds": 1.0,
              "model.name": "mfcc_cnn", "batch_size": 8, "eval_batch_size": 8,
              "total_steps": 6, "log_every_steps": 2, "eval_every_steps": 3,
              "checkpoint_every_steps": 2, "frontend.n_fft": 512, "frontend.hop_length": 256,
              "frontend.n_mels": 64, "optim.warmup_steps": 2}
    values.update(extra)
    return values


def gan_overrides(data_dir: str, **extra) -> dict:
    """A small StarGAN on 1 s crops with the classifier runs' frontend; scored by the proxy
    evaluator (needs `evals.val.classifier_workdir` or `gan.classifier_workdir`)."""
    values = {"data.name": "fma/small", "data.data_dir": data_dir, "data.crop_seconds": 1.0,
              "batch_size": 8, "eval_batch_size": 8, "total_steps": 4, "log_every_steps": 2,
              "eval_every_steps": 4, "checkpoint_every_steps": 2, "frontend.n_fft": 512,
              "frontend.hop_length": 256, "frontend.n_mels": 64, "model.channels": 4,
              "model.encoder_blocks": 1, "model.decoder_blocks": 1, "model.style_dim": 8,
              "discriminator.channels": 4, "discriminator.num_layers": 2, "evals.val.clips": 8,
              "evals.val.num_samples": 1, "gan.classifier_augment": True,
              "gan.chroma_weight": 1.0}
    values.update(extra)
    return values


def _apply(c, values: dict):
    for key, value in values.items():
        node = c
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return c


def config(data_dir: str, **extra):
    from jaxgenre.configs import mfcc_cnn
    return _apply(mfcc_cnn.get_config("demo"), overrides(data_dir, **extra))


def crnn_config(data_dir: str, **extra):
    """The tiny classifier's data and frontend with the CRNN (a GRU over time) as its model."""
    from jaxgenre.configs import crnn
    return _apply(crnn.get_config("demo"), overrides(data_dir, **{"model.name": "crnn", **extra}))


def gan_config(data_dir: str, **extra):
    from jaxgenre.configs import stargan
    return _apply(stargan.get_config("demo"), gan_overrides(data_dir, **extra))


def autoencoder_config(data_dir: str, **extra):
    """The small StarGAN's sizes for the autoencoder (its latent classifier as the adversary)."""
    from jaxgenre.configs import autoencoder
    values = {k: v for k, v in gan_overrides(data_dir, **extra).items()
              if k != "discriminator.num_layers"}
    return _apply(autoencoder.get_config("demo"), values)


def cli(workdir: str, data_dir: str, devices: int = 1, extra_args=(), wait=True, gan=False,
        cwd: str = ROOT, log=None, **extra):
    """Runs `python -m jaxgenre.train` on `devices` fake CPU devices (the small classifier, or
    with gan=True the small StarGAN), from `cwd` (the config path stays `configs/...`). The
    console goes to a pipe, or to the open file `log` (processes nobody reads while they run:
    a full pipe would block them)."""
    spec = "configs/stargan.py:demo" if gan else "configs/mfcc_cnn.py:demo"
    values = gan_overrides(data_dir, **extra) if gan else overrides(data_dir, **extra)
    args = [sys.executable, "-m", "jaxgenre.train", "--config", spec, "--workdir", workdir]
    args += [f"--config.{k}={v}" for k, v in values.items()]
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    proc = subprocess.Popen(args + list(extra_args), cwd=cwd, env=env,
                            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_processes_and_one(tmp_path, task: str = "classifier"):
    """`tests.multiprocess_steps` in 2 processes x 2 devices and in 1 process x 4 devices, on the
    same global batches; returns their saved parameters (two, one) as npz files."""
    def launch(out, n, pid, port, devices):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        return subprocess.Popen([sys.executable, "-m", "tests.multiprocess_steps", out, str(n),
                                 str(pid), str(port), task], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    port = free_port()
    procs = [launch(str(tmp_path / "two.npz"), 2, pid, port, 2) for pid in range(2)]
    procs.append(launch(str(tmp_path / "one.npz"), 1, 0, 0, 4))
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
    return np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")


def saved_steps(workdir: str) -> list[int]:
    d = epath.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def params(workdir: str, step: int, field: str = "params", state_class=None) -> dict:
    """The saved parameters (or another `field` of the state, a classifier's `TrainState` by
    default) of `step` as numpy arrays, by path."""
    from jaxgenre.tasks import classifier
    items = (state_class or classifier.TrainState).ITEMS
    item = next(k for k, fields in items.items() if field in fields)
    path = epath.Path(workdir).absolute() / "checkpoints" / str(step) / item
    tree = ocp.StandardCheckpointer().restore(path)
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}/{k}")
        else:
            flat[prefix] = np.asarray(node)

    walk(tree[field], "")
    return flat


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


_EXITS = """
import contextlib, importlib, io, json, sys
from absl import flags
from jaxgenre.core import cli as cli_lib
cli = importlib.import_module(sys.argv[1])
if hasattr(cli, "define_flags"):  # CLIs that define their flags only when run
    cli.define_flags()
results = []
for args in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    try:
        argv = flags.FLAGS(["prog", *args])
    except flags.Error as e:  # what absl prints before exiting 1
        results.append([1, f"FATAL Flags parsing error: {e}"])
        continue
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cli_lib.call_main(cli.main, argv)
            code = 0
        except SystemExit as e:
            code, err = 1, io.StringIO(err.getvalue() + str(e.code))
        except Exception as e:
            code, err = 1, io.StringIO(f"Traceback: {type(e).__name__}: {e}")
    results.append([code, err.getvalue()])
print("RESULTS" + json.dumps(results))
"""


def cli_exits(module: str, argvs: list[list[str]], devices: int | None = None
              ) -> list[tuple[int, str]]:
    """Runs `module`'s main once per argv (flags and positional arguments) in ONE process (each
    CLI start imports TensorFlow and JAX, ~10 s); returns (exit code, stderr and exit message)
    per argv. devices: fake CPU devices (default: the tests' setting)."""
    env = dict(os.environ)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run([sys.executable, "-c", _EXITS, module, json.dumps(argvs)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0 and "RESULTS" in proc.stdout, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout.split("RESULTS", 1)[1])]


def tree_max_abs_diff(a, b) -> float:
    """The largest absolute difference between the leaves of two trees of one structure."""
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                          strict=True))
