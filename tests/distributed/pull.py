"""The `w` "penalty" the distributed scripts train with, importable by the tests that load
their files."""

import keras


@keras.saving.register_keras_serializable("gdeeper_tests")
class Pull(keras.regularizers.Regularizer):
    """A w "penalty" of `-w`: w climbs a depth every ~100 steps of Adam(0.01)."""

    def __call__(self, w):
        return -keras.ops.sum(w)

    def get_config(self):
        return {}
