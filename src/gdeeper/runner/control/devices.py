"""One run on several devices: `devices: N` in a run's config (`gdeeper train --devices N`).

Data parallel, with Keras' own engine for each backend:
- JAX: `keras.distribution.DataParallel` over the first N devices. On a CPU, JAX is told to
  split the host into N devices before it starts (`--xla_force_host_platform_device_count`, an
  XLA flag for the CPU platform only: a GPU machine still lists its GPUs first).
- TensorFlow: `tf.distribute.MirroredStrategy` over N GPUs, or over the CPU split into N
  logical devices where there are fewer GPUs. Keras 3.15 with TensorFlow 2.21 fails under the
  strategy with more than one step per execution, so there the run takes one (and reads `w`
  every `check_every` x as many steps, as under torch: `backend.for_backend`).
- torch: refused (one line); Keras has no distribution for it.

`prepare_devices` runs before Keras is imported; `distribute` after, around everything that
creates variables (the model, a checkpoint's load, growth inherits the scope itself), and it
returns the layout that the run's manifest records. Model parallelism (`ModelParallel` with a
`LayoutMap`) is for the library user's own script: the runner does not offer it.
"""

from __future__ import annotations

import contextlib
import os

from gdeeper.config import ConfigError, RunConfig

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
_STRATEGIES: dict = {}  # TensorFlow: one MirroredStrategy per device set in a process


def prepare_devices(backend: str | None, config: RunConfig) -> None:
    """Refuse what cannot run (one line), and set what must be set before Keras starts."""
    devices = config.devices
    if devices == 1:
        return
    if backend == "torch":
        raise ConfigError(
            f"devices: {devices} needs the jax or tensorflow backend (Keras has no "
            "distribution for torch); run torch on one device"
        )
    if backend == "jax":
        # JAX shards every batch evenly over the devices (TensorFlow splits uneven ones).
        training = getattr(config, "training", None)
        for key in ("batch_size", "val_batch_size"):
            size = getattr(training, key, None)
            if size is not None and size % devices:
                raise ConfigError(
                    f"training.{key} ({size}) must be a multiple of devices ({devices}) on jax"
                )
        flags = os.environ.get("XLA_FLAGS", "")
        if HOST_DEVICES_FLAG not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICES_FLAG}={devices}".strip()


def distribute(devices: int) -> tuple[contextlib.AbstractContextManager, dict | None]:
    """The scope that builds, loads and trains the model on `devices` devices, and the layout
    it uses ({"engine", "devices"}; None on one device). Keras must be imported."""
    if devices == 1:
        return contextlib.nullcontext(), None
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return _jax(devices)
    if backend == "tensorflow":
        return _tensorflow(devices)
    raise ConfigError(f"devices: {devices} needs the jax or tensorflow backend, not {backend}")


def _too_few(devices: int, found: list[str]) -> ConfigError:
    return ConfigError(
        f"devices: {devices} asked for, but this process has {len(found)} "
        f"({', '.join(found) or 'none'})"
    )


def _jax(devices: int):
    import keras

    found = keras.distribution.list_devices()
    if len(found) < devices:
        raise _too_few(devices, found)
    chosen = found[:devices]

    @contextlib.contextmanager
    def scope():
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)

    return scope(), {"engine": "keras.distribution.DataParallel", "devices": chosen}


def _tensorflow(devices: int):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        # Only before TensorFlow's runtime starts (the runner's first op comes later); once it
        # has (a second session in this process), the devices it has are what there is.
        with contextlib.suppress(RuntimeError):
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )
        found = [d.name for d in tf.config.list_logical_devices("CPU")]
    else:
        found = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(found) < devices:
        raise _too_few(devices, found)
    chosen = found[:devices]
    # One strategy per device set and process: a second MirroredStrategy's collective ops can
    # clash with the first one's ("Shape mismatch in the collective instance"), measured when
    # a benchmark built one per model in one process.
    key = tuple(chosen)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(chosen)
    layout = {"engine": "tf.distribute.MirroredStrategy", "devices": chosen}
    return _STRATEGIES[key].scope(), layout
