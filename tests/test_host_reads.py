"""The runner reads the loss on the host (which waits for the step that wrote it) every
`training.check_every` executions and at the end of each epoch, not after every step (issue 26):
on a GPU a read per step keeps the host from queuing steps ahead."""

import keras

from gdeeper.config import READ_STEPS, StepTrainingConfig
from gdeeper.experiments import Plan
from gdeeper.runner.session.callbacks import RunRecorder, TrainProgress


class CountedLoss:
    """A loss value that counts how often it is read as a float."""

    reads = 0

    def __float__(self):
        CountedLoss.reads += 1
        return 0.5


def test_the_loss_is_read_every_check_every_executions_and_at_each_epoch_end(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plan = Plan(model=model, train_data=None, val_data=None, steps_per_epoch=100, epochs=2)
    recorder = RunRecorder(
        tmp_path, metrics=None, plan=plan, initial_epoch=0, prior={}, check_every=5
    )
    recorder.set_model(model)
    CountedLoss.reads = 0
    for epoch in range(2):
        recorder.on_epoch_begin(epoch)
        for batch in range(9, 100, 10):  # steps_per_execution 10: 10 executions an epoch
            recorder.on_train_batch_end(batch, {"loss": CountedLoss()})
    assert CountedLoss.reads == 2 * 2  # the 5th and the 10th (last) execution of each epoch
    assert recorder.step == 200


def test_the_progress_display_reads_no_more_often():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plan = Plan(model=model, train_data=None, val_data=None, steps_per_epoch=100, epochs=1)
    display = TrainProgress(plan, 0, check_every=5)
    display.progress = type("Bar", (), {"update": lambda self, *a, **k: None})()
    display.task = 0
    CountedLoss.reads = 0
    for batch in range(10):
        display.on_train_batch_end(batch, {"loss": CountedLoss()})
    assert CountedLoss.reads == 2


def test_check_every_defaults_to_about_fifty_steps():
    assert StepTrainingConfig(steps=1000, val_every=100).check_every == READ_STEPS // 50
    assert StepTrainingConfig(steps=1000, val_every=100, steps_per_execution=5).check_every == 10
    assert StepTrainingConfig(steps=700, val_every=7).check_every == READ_STEPS // 7
    assert StepTrainingConfig(steps=1000, val_every=100, check_every=3).check_every == 3
