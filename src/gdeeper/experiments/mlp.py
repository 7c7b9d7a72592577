"""The residual MLP of the spirals experiment and of the depth study (no experiment of its own).

    Input -> Dense(width, relu) -> [depth blocks] -> Dense(outputs, sigmoid or softmax)

The blocks are `x = relu(x + Dense(width)(x))`. With `depth=None` they live in one `GInfinity`
(`h = relu`) whose `w` learns the depth; with `depth=L` they are L plain residual blocks written
out in Keras, the gates fixed open (no `w`): the fixed-depth baseline. Every weight trains.
"""

from __future__ import annotations

# The meta-layer's options where this network's defaults are not GInfinity's: the original
# layer's depth signal and retracing levels (the spirals experiment sets its own).
DEFAULTS = {"normalize": None, "frontier": 0.0, "exact_depth": 8, "headroom": 0.5}


def build_residual_mlp(
    inputs: int,
    outputs: int,
    width: int = 8,
    depth: int | None = None,
    seed: int | None = None,
    name: str = "residual_mlp",
    **layer,
):
    """The network above (uncompiled); `outputs=1` ends in a sigmoid, more in a softmax.
    `layer` are the meta-layer's options, by `GInfinity`'s names (`w_regularizer`, 1e-3 here
    unless given; `w_init`, `chunk`, `max_depth`, `w_cost_per_parameter`, `normalize`,
    `frontier`, `penalty_start`, `exact_depth`, `headroom`...); `w_penalty` is read as the old
    name of `w_regularizer`."""
    import keras

    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"depth must be None or an integer >= 0, got depth={depth!r}")
    for argument, value in (("inputs", inputs), ("outputs", outputs), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be an integer >= 1, got {argument}={value!r}")
    layers = keras.layers
    x_in = keras.Input((inputs,), name="x")
    x = layers.Dense(width, activation="relu", name="dense_in")(x_in)
    if depth is None:
        from gdeeper.core.layer import GInfinity

        options = {**DEFAULTS, "w_regularizer": layer.pop("w_penalty", 1e-3), **layer}
        if options.get("w_cost_per_parameter") == 0:
            del options["w_cost_per_parameter"]  # no budget: the layer is saved without one
        x = GInfinity([layers.Dense(width)], h="relu", seed=seed, name="g", **options)(x)
    else:
        for i in range(depth):
            f = layers.Dense(width, name=f"block{i}")(x)
            x = layers.Activation("relu", name=f"h{i}")(layers.Add(name=f"add{i}")([x, f]))
    activation = "sigmoid" if outputs == 1 else "softmax"
    y = layers.Dense(outputs, activation=activation, name="dense_out")(x)
    return keras.Model(x_in, y, name=name)
