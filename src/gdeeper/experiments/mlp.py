"""The residual MLP of the spirals experiment and of the depth study (no experiment of its own).

    Input -> Dense(width, relu) -> [depth blocks] -> Dense(outputs, sigmoid or softmax)

The blocks are `x = relu(x + Dense(width)(x))`. With `depth=None` they live in one `GInfinity`
(`h = relu`) whose `w` learns the depth; with `depth=L` they are L plain residual blocks written
out in Keras, the gates fixed open (no `w`): the fixed-depth baseline. Every weight trains.
"""

from __future__ import annotations


def build_residual_mlp(
    inputs: int,
    outputs: int,
    width: int = 8,
    depth: int | None = None,
    w_init: float = 1.0,
    w_penalty: float = 1e-3,
    chunk: int = 5,
    max_depth: int = 1000,
    seed: int | None = None,
    name: str = "residual_mlp",
    w_cost_per_parameter: float = 0.0,
    normalize: str | None = None,
    frontier: float = 0.0,
    penalty_start: int = 0,
    exact_depth: int = 8,
    headroom: float = 0.5,
):
    """The network above (uncompiled); `outputs=1` ends in a sigmoid, more in a softmax.
    `w_cost_per_parameter` > 0 sets the meta-layer's depth budget; `normalize`, `frontier`
    and `penalty_start` are the depth-signal options of `GInfinity`, `exact_depth` and
    `headroom` its retracing levels (same names)."""
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

        budget = {"w_cost_per_parameter": w_cost_per_parameter} if w_cost_per_parameter else {}
        x = GInfinity(
            [layers.Dense(width)],
            h="relu",
            w_init=w_init,
            w_regularizer=w_penalty,
            chunk=chunk,
            max_depth=max_depth,
            seed=seed,
            name="g",
            normalize=normalize,
            frontier=frontier,
            penalty_start=penalty_start,
            exact_depth=exact_depth,
            headroom=headroom,
            **budget,
        )(x)
    else:
        for i in range(depth):
            f = layers.Dense(width, name=f"block{i}")(x)
            x = layers.Activation("relu", name=f"h{i}")(layers.Add(name=f"add{i}")([x, f]))
    activation = "sigmoid" if outputs == 1 else "softmax"
    y = layers.Dense(outputs, activation=activation, name="dense_out")(x)
    return keras.Model(x_in, y, name=name)
