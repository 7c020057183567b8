"""The training loop: accumulation math, divergence guard, checkpoints and resume,
best-epoch selection, batch norm modes, optimizers and progress reports."""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.engine import trainer
from workers.engine.checkpoint import MANIFEST
from workers.engine.config import NoSampler, TrainConfig, TrainingConfig
from workers.engine.errors import EngineError
from workers.engine.losses import bce
from workers.engine.models import build_model, group_count
from workers.engine.samplers import build_sampler
from workers.engine.trainer import (
    EpochRecord,
    FitResult,
    Precision,
    Progress,
    TrainingStopped,
    accumulate_window,
    build_optimizer,
    fit,
    plan_windows,
    predict_proba,
    resolve_precision,
)

ROWS, VAL_ROWS, FEATURES, LABELS = 200, 60, 8, 3


def make_data(seed: int = 0):
    """``x [rows, 8]`` float32 and ``y [rows, 3]`` uint8, learnable from x."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS + VAL_ROWS, FEATURES)).astype(np.float32)
    logits = x @ rng.normal(size=(FEATURES, LABELS)) + rng.normal(size=LABELS)
    y = (logits + rng.normal(size=logits.shape) > 0.5).astype(np.uint8)
    return x[:ROWS], y[:ROWS], x[ROWS:], y[ROWS:]


DATA = make_data()


def make_config(train: dict | None = None, **sections) -> TrainingConfig:
    model = {"type": "mlp", "hidden_sizes": [16], "dropout": 0.0}
    model.update(sections.pop("model", {}))
    return TrainingConfig.model_validate(
        {
            "model": model,
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, **(train or {})},
            "imbalance": {"loss": {"type": "bce"}},
            **sections,
        }
    )


def constant_score(y_val, probs):
    return 0.5


class Recorder:
    """Callbacks that keep what they were told; ``stop_after`` epochs ends the run."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.records: list[EpochRecord] = []
        self.progress: list[Progress] = []
        self.checkpoints: list[int] = []

    def on_progress(self, progress: Progress) -> None:
        self.progress.append(progress)

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.records.append(record)

    def on_checkpoint(self, epoch: int) -> None:
        self.checkpoints.append(epoch)

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.records) >= self.stop_after


def run(config: TrainingConfig, score_fn=constant_score, data=DATA, **kwargs):
    x_train, y_train, x_val, y_val = data
    return fit(config, x_train, y_train, x_val, y_val, score_fn, **kwargs)


def values(record: EpochRecord) -> tuple:
    """Every field but the wall-clock seconds."""
    return (
        record.epoch,
        record.train_loss,
        record.val_loss,
        record.val_macro_f1,
        record.lr,
        record.skipped_steps,
        record.grad_norm,
        record.rollbacks,
    )


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# --- batches and accumulation ---------------------------------------------------------


def test_plan_windows_groups_micro_batches_and_keeps_the_short_tail():
    assert plan_windows(10, 3, 2) == [[(0, 3), (3, 6)], [(6, 9), (9, 10)]]
    assert plan_windows(10, 3, 1) == [[(0, 3)], [(3, 6)], [(6, 9)], [(9, 10)]]
    assert plan_windows(4, 8, 3) == [[(0, 4)]]
    # Batch norm cannot train on one row: a 1-row tail joins the micro-batch before.
    assert plan_windows(10, 3, 2, merge_single=True) == [[(0, 3), (3, 6)], [(6, 10)]]
    assert plan_windows(7, 3, 1, merge_single=True) == [[(0, 3)], [(3, 7)]]
    assert plan_windows(1, 3, 1, merge_single=True) == [[(0, 1)]]


def reference_sgd_epoch(config: TrainingConfig, x, y, windows_of: int):
    """One epoch of plain SGD computed window by window on full-window batches:
    ``p -= lr * grad(mean over the window's rows of the mean BCE over labels)``.
    Returns the parameters and the mean per-sample loss before each update."""
    torch.manual_seed(config.train.seed)  # fit builds its model right after this
    model = build_model(config.model, FEATURES, LABELS)
    order = build_sampler(NoSampler(), y, config.train.seed).epoch_order(1)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64)
    losses = []
    for start in range(0, len(order), windows_of):
        idx = torch.as_tensor(order[start : start + windows_of])
        per_sample = F.binary_cross_entropy_with_logits(
            model(xt[idx]), yt[idx], reduction="none"
        ).mean(dim=1)
        model.zero_grad()
        per_sample.mean().backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= config.train.lr * param.grad
        losses.extend(per_sample.tolist())
    return dict(model.named_parameters()), sum(losses) / len(losses)


@pytest.mark.usefixtures("float64")
def test_k_micro_batches_step_like_one_batch_including_an_uneven_last_window():
    # 10 rows, micro-batches of 3, windows of 2: windows of 6 rows (3+3) and 4 (3+1).
    x, y = DATA[0][:10].astype(np.float64), DATA[1][:10]
    data = (x, y, DATA[2][:5].astype(np.float64), DATA[3][:5])
    sgd = {"type": "sgd", "momentum": 0.0}
    train = {"epochs": 1, "lr": 0.5, "optimizer": sgd}
    micro = make_config({**train, "batch_size": 3, "accumulation_steps": 2})
    whole = make_config({**train, "batch_size": 6, "accumulation_steps": 1})

    got = run(micro, data=data)
    one_batch = run(whole, data=data)
    expected, expected_loss = reference_sgd_epoch(micro, x, y, windows_of=6)

    for name, param in got.model.named_parameters():
        assert param.dtype == torch.float64
        torch.testing.assert_close(param, expected[name], rtol=0, atol=1e-10)
        torch.testing.assert_close(
            param, dict(one_batch.model.named_parameters())[name], rtol=0, atol=1e-10
        )
    assert got.history[0].train_loss == pytest.approx(expected_loss, abs=1e-12)


def test_accumulate_window_syncs_gradients_only_on_the_last_micro_batch():
    class FakeDDP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(FEATURES, LABELS)
            self.skipped_syncs = 0

        def forward(self, x):
            return self.inner(x)

        @contextlib.contextmanager
        def no_sync(self):
            self.skipped_syncs += 1
            yield

    model = FakeDDP()
    x, y = torch.as_tensor(DATA[0]), torch.as_tensor(DATA[1], dtype=torch.float32)
    order = torch.arange(ROWS)
    window = [(0, 4), (4, 8), (8, 12), (12, 13)]
    total = accumulate_window(model, bce, x, y, order, window, Precision("cpu"), None)

    assert model.skipped_syncs == 3
    expected = bce(model(x[:13]), y[:13]).mean(dim=1).sum(dtype=torch.float64)
    torch.testing.assert_close(total, expected.detach(), rtol=1e-6, atol=0)


# --- optimizers, schedules, precision ----------------------------------------------


def test_build_optimizer_follows_the_config():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(
        TrainConfig(
            lr=0.1,
            weight_decay=0.01,
            optimizer={"type": "sgd", "momentum": 0.8, "nesterov": True},
        ),
        params,
    )
    assert type(sgd) is torch.optim.SGD
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.8, True)
    assert group["weight_decay"] == 0.01

    adamw = build_optimizer(
        TrainConfig(
            weight_decay=0.05, optimizer={"type": "adamw", "betas": (0.8, 0.9)}
        ),
        params,
    )
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["betas"] == (0.8, 0.9)
    assert adamw.param_groups[0]["weight_decay"] == 0.05
    assert type(build_optimizer(TrainConfig(), params)) is torch.optim.Adam


def test_epoch_rates_follow_the_schedule():
    schedule = {"type": "step", "step_size": 1, "gamma": 0.5}
    result = run(make_config({"lr": 0.08, "schedule": schedule}))
    assert [r.lr for r in result.history] == [0.08, 0.04, 0.02]


@pytest.mark.parametrize("mode", ["auto", "off", "bf16", "fp16"])
def test_the_cpu_always_trains_in_full_precision(mode):
    assert resolve_precision(mode, torch.device("cpu")) == Precision("cpu")


def test_a_scaled_loss_trains_like_an_unscaled_one(monkeypatch):
    config = make_config({"epochs": 2})
    plain = run(config)
    monkeypatch.setattr(
        trainer, "resolve_precision", lambda mode, device: Precision("cpu", scaled=True)
    )
    scaled = run(config)
    for a, b in zip(plain.history, scaled.history, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-5)


class HugeScale(Precision):
    """A CPU loss scaler started at 2**127, so the first gradients overflow."""

    def make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cpu", init_scale=2.0**127)


def test_scaler_overflows_are_skipped_without_counting_as_divergence(monkeypatch):
    monkeypatch.setattr(
        trainer, "resolve_precision", lambda mode, device: HugeScale("cpu", scaled=True)
    )
    x_train, y_train, x_val, y_val = DATA
    data = (x_train * 100, y_train, x_val * 100, y_val)
    result = run(make_config({"divergence": {"max_bad_steps": 1}}), data=data)
    # The scale halves after each overflow until the gradients fit: a few skipped
    # steps, and no rollback even though one bad step would trigger it.
    assert result.history[0].skipped_steps > 0
    assert [r.rollbacks for r in result.history] == [0, 0, 0]


def test_a_nan_loss_under_a_scaler_still_counts_as_divergence(monkeypatch):
    monkeypatch.setattr(
        trainer, "resolve_precision", lambda mode, device: Precision("cpu", scaled=True)
    )
    with_loss(monkeypatch, FlakyLoss({1}))
    result = run(make_config({"divergence": {"max_bad_steps": 1}}))
    assert [r.rollbacks for r in result.history] == [1, 1, 1]
    assert result.history[0].lr == 0.005


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["bf16", "fp16", "off"])
def test_mixed_precision_on_cuda_trains_and_returns_a_cpu_model(mode):
    result = run(make_config({"device": "cuda", "mixed_precision": mode}))
    assert all(math.isfinite(r.train_loss) for r in result.history)
    assert next(result.model.parameters()).device.type == "cpu"


# --- results: best epoch, early stopping -------------------------------------------


class Scripted:
    """A score_fn returning the given scores in turn and keeping the probabilities."""

    def __init__(self, scores):
        self.scores = list(scores)
        self.probs: list[np.ndarray] = []

    def __call__(self, y_val, probs):
        self.probs.append(probs.copy())
        return self.scores[len(self.probs) - 1]


def test_the_best_epoch_is_the_model_and_patience_stops_the_run():
    score = Scripted([0.2, 0.5, 0.4, 0.45, 0.9, 0.9])
    config = make_config({"epochs": 6, "early_stopping": {"patience": 2}})
    result = run(config, score_fn=score)

    assert [r.val_macro_f1 for r in result.history] == [0.2, 0.5, 0.4, 0.45]
    assert (result.best_epoch, result.stopped_early) == (2, True)
    np.testing.assert_array_equal(result.val_probs, score.probs[1])
    probs = predict_proba(result.model, torch.as_tensor(DATA[2])).numpy()
    np.testing.assert_allclose(probs, score.probs[1], rtol=0, atol=1e-6)
    assert not result.model.training
    assert next(result.model.parameters()).device.type == "cpu"


def test_an_improvement_must_exceed_min_delta():
    score = Scripted([0.5, 0.505, 0.52])
    config = make_config({"early_stopping": {"min_delta": 0.01}})
    result = run(config, score_fn=score)
    assert result.best_epoch == 3
    score = Scripted([0.5, 0.505, 0.509])
    assert run(config, score_fn=score).best_epoch == 1


def test_val_loss_metric_keeps_the_lowest_loss():
    config = make_config({"epochs": 4, "early_stopping": {"metric": "val_loss"}})
    result = run(config, score_fn=Scripted([0.9, 0.1, 0.1, 0.1]))
    losses = [r.val_loss for r in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1


def test_missing_scores_are_never_best_unless_all_are_missing():
    assert run(make_config(), score_fn=Scripted([None, 0.3, None])).best_epoch == 2
    assert run(make_config(), score_fn=Scripted([None, None, None])).best_epoch == 3


def test_imbalance_auto_is_refused():
    config = make_config()
    config = config.model_copy(update={"imbalance": "auto"})
    with pytest.raises(
        ValueError, match="must be resolved before training, not 'auto'"
    ):
        run(config)


# --- progress and stopping -----------------------------------------------------------


def test_progress_reports_every_step_when_the_interval_is_zero():
    callbacks = Recorder()
    config = make_config({"batch_size": 30, "accumulation_steps": 2})
    run(config, callbacks=callbacks, progress_interval=0.0)

    steps_per_epoch = math.ceil(math.ceil(ROWS / 30) / 2)  # 7 micro-batches -> 4
    assert [p.step for p in callbacks.progress] == list(
        range(1, 3 * steps_per_epoch + 1)
    )
    last = callbacks.progress[-1]
    assert (last.epoch, last.epochs, last.steps_total) == (3, 3, 3 * steps_per_epoch)
    assert (last.skipped_steps, last.rollbacks) == (0, 0)
    assert last.eta_seconds == 0.0
    assert all(p.loss is not None and math.isfinite(p.loss) for p in callbacks.progress)


def test_should_stop_is_checked_at_progress_reports(tmp_path):
    class StopMidEpoch(Recorder):
        def should_stop(self) -> bool:
            return len(self.records) == 1 and len(self.progress) >= 8

    callbacks = StopMidEpoch()
    with pytest.raises(TrainingStopped, match="stopped at epoch 2, step"):
        run(
            make_config(),
            callbacks=callbacks,
            checkpoint_dir=tmp_path,
            progress_interval=0.0,
        )
    assert callbacks.checkpoints == [1]
    assert (tmp_path / MANIFEST).is_file()


# --- divergence ----------------------------------------------------------------------


def test_an_exploding_run_fails_with_code_diverged():
    x_train, y_train, x_val, y_val = DATA
    scales = np.array([1, 1, 1, 1, 1e4, 1e4, 1e4, 1e4], dtype=np.float32)
    data = (x_train * scales, y_train, x_val * scales, y_val)
    config = make_config(
        {
            "lr": 10.0,
            "batch_size": 20,
            "optimizer": {"type": "sgd", "momentum": 0.0},
            "divergence": {"max_bad_steps": 3, "lr_factor": 0.5, "max_rollbacks": 1},
        },
        data={"standardize": False},
    )
    with pytest.raises(EngineError) as caught:
        run(config, data=data)

    error = caught.value
    assert error.code == "diverged"
    assert error.message.startswith("Training diverged at epoch 1, optimizer step ")
    assert (
        ", learning rate 5: the loss or gradient norm was NaN or infinite for 3 "
        "consecutive steps after 1 rollback(s) to a lower rate; the learning rate is "
        "likely too high (lower config.train.lr), or the features are unscaled: "
        "config.data.standardize is false and feature standard deviations range "
        "from " in error.message
    )
    assert error.message.endswith(" (set it to true).")


class FlakyLoss:
    """BCE that returns NaN on the chosen training calls (1-based, micro-batches)."""

    def __init__(self, bad_calls: set[int]) -> None:
        self.bad_calls, self.calls = bad_calls, 0

    def __call__(self, logits, targets):
        loss = bce(logits, targets)
        if not torch.is_grad_enabled():  # validation
            return loss
        self.calls += 1
        return loss * math.nan if self.calls in self.bad_calls else loss


def with_loss(monkeypatch, loss: FlakyLoss) -> None:
    monkeypatch.setattr(trainer, "build_loss", lambda config, positives, rows: loss)


def test_isolated_bad_steps_are_skipped_and_counted(monkeypatch):
    with_loss(monkeypatch, FlakyLoss({3, 8, 25}))  # 10 steps per epoch
    callbacks = Recorder()
    config = make_config({"batch_size": 20, "divergence": {"max_bad_steps": 2}})
    result = run(config, callbacks=callbacks, progress_interval=0.0)

    assert [r.skipped_steps for r in result.history] == [2, 0, 1]
    assert [r.rollbacks for r in result.history] == [0, 0, 0]
    assert [p.skipped_steps for p in callbacks.progress][-1] == 3
    for record in result.history:
        for value in (record.train_loss, record.val_loss, record.grad_norm):
            assert math.isfinite(value)


def test_a_run_of_bad_steps_rolls_back_with_a_lower_rate(monkeypatch):
    # Epoch 2 (steps 11-20) goes bad from its third step: the loop returns to the end
    # of epoch 1, halves the rate and redoes epoch 2.
    with_loss(monkeypatch, FlakyLoss({13, 14, 15}))
    config = make_config(
        {"batch_size": 20, "lr": 0.02, "divergence": {"max_bad_steps": 3}}
    )
    result = run(config)

    assert [r.lr for r in result.history] == [0.02, 0.01, 0.01]
    assert [r.rollbacks for r in result.history] == [0, 1, 1]
    assert [r.skipped_steps for r in result.history] == [0, 0, 0]


def test_an_epoch_without_a_good_step_is_a_rollback(monkeypatch):
    # 2 steps per epoch, max_bad_steps 3: epoch 1 ends with no good step.
    with_loss(monkeypatch, FlakyLoss({1, 2}))
    config = make_config({"batch_size": 100, "divergence": {"max_bad_steps": 3}})
    result = run(config)
    assert [r.rollbacks for r in result.history] == [1, 1, 1]
    assert result.history[0].lr == 0.005


def test_divergence_without_rollbacks_left_fails(monkeypatch):
    with_loss(monkeypatch, FlakyLoss({1, 2}))
    config = make_config(
        {"batch_size": 100, "divergence": {"max_bad_steps": 2, "max_rollbacks": 0}}
    )
    with pytest.raises(EngineError) as caught:
        run(config)
    assert caught.value.code == "diverged"
    assert caught.value.message == (
        "Training diverged at epoch 1, optimizer step 2, learning rate 0.01: the loss "
        "or gradient norm was NaN or infinite for 2 consecutive steps after 0 "
        "rollback(s) to a lower rate; the learning rate is likely too high (lower "
        "config.train.lr)."
    )


# --- checkpoints and resume ---------------------------------------------------------


RESUMABLE = {
    "epochs": 4,
    "batch_size": 16,
    "accumulation_steps": 2,
    "lr": 0.01,
    "grad_clip_norm": 0.5,
    "schedule": {"type": "cosine", "warmup_epochs": 0.5, "min_lr": 0.001},
}


@pytest.mark.parametrize(
    "sampler,schedule",
    [("none", "cosine"), ("repeat_factor", "plateau")],
)
def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    tmp_path, sampler, schedule
):
    config = make_config(
        {
            **RESUMABLE,
            "schedule": {"type": schedule, "patience": 0, "warmup_epochs": 0.5},
        },
        model={"dropout": 0.3},
        imbalance={"loss": {"type": "bce"}, "sampler": {"type": sampler}},
    )
    scores = Scripted([0.3, 0.5, 0.4, 0.6])
    whole = run(config, score_fn=scores)

    first = Recorder(stop_after=2)
    with pytest.raises(TrainingStopped, match="stopped after epoch 2"):
        run(
            config,
            score_fn=Scripted(scores.scores),
            callbacks=first,
            checkpoint_dir=tmp_path,
        )
    assert first.checkpoints == [1, 2]
    # Something else draws from the global RNGs before the job is picked up again.
    torch.rand(5)
    np.random.random(5)

    second = Recorder()
    resumed = run(
        config,
        score_fn=Scripted(scores.scores[2:]),
        callbacks=second,
        checkpoint_dir=tmp_path,
    )

    assert [r.epoch for r in second.records] == [3, 4]
    assert [values(r) for r in resumed.history] == [values(r) for r in whole.history]
    assert resumed.best_epoch == whole.best_epoch == 4
    np.testing.assert_array_equal(resumed.val_probs, whole.val_probs)
    assert_same_weights(resumed.model, whole.model)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    config = make_config({"epochs": 2})
    done = run(config, checkpoint_dir=tmp_path)
    callbacks = Recorder()
    again = run(config, callbacks=callbacks, checkpoint_dir=tmp_path)

    assert callbacks.records == [] and callbacks.progress == []
    assert [values(r) for r in again.history] == [values(r) for r in done.history]
    assert_same_weights(again.model, done.model)


def test_an_early_stopped_run_stays_stopped_on_resume(tmp_path):
    config = make_config({"epochs": 5, "early_stopping": {"patience": 1}})
    done = run(config, score_fn=Scripted([0.5, 0.4]), checkpoint_dir=tmp_path)
    again = run(config, score_fn=Scripted([]), checkpoint_dir=tmp_path)
    assert (again.stopped_early, again.best_epoch, len(again.history)) == (True, 1, 2)
    assert done.stopped_early


def test_a_checkpoint_of_another_config_is_ignored_with_a_warning(tmp_path, caplog):
    with pytest.raises(TrainingStopped):
        run(make_config(), callbacks=Recorder(stop_after=1), checkpoint_dir=tmp_path)

    callbacks = Recorder()
    with caplog.at_level(logging.WARNING, logger="workers.engine.trainer"):
        run(make_config({"lr": 0.02}), callbacks=callbacks, checkpoint_dir=tmp_path)
    assert [r.epoch for r in callbacks.records] == [1, 2, 3]
    assert any(
        r.getMessage().startswith("trainer.checkpoint_config_mismatch")
        and "action=start_fresh" in r.getMessage()
        for r in caplog.records
    )


# --- batch norm ---------------------------------------------------------------------


def test_group_count_keeps_sixteen_channels_per_group():
    assert [group_count(w) for w in (1, 15, 20, 32, 40, 48, 128, 256, 1024)] == [
        1,
        1,
        1,
        2,
        2,
        3,
        8,
        16,
        32,
    ]


def test_build_model_places_the_configured_norm_after_each_hidden_linear():
    config = make_config(model={"hidden_sizes": [32, 1], "batch_norm": True}).model
    kinds = [type(m).__name__ for m in build_model(config, FEATURES, LABELS).net]
    assert kinds == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
    ]
    grouped = build_model(config, FEATURES, LABELS, batchnorm="group_norm").net
    assert [type(m).__name__ for m in grouped][1:5] == [
        "GroupNorm",
        "ReLU",
        "Linear",
        "Identity",
    ]
    assert grouped[1].num_groups == 2
    plain = make_config().model
    assert "Norm" not in str(
        build_model(plain, FEATURES, LABELS, batchnorm="group_norm")
    )


def test_freeze_stops_the_running_statistics_after_epoch_one():
    def last_epoch_best(y_val, probs):
        last_epoch_best.calls += 1
        return float(last_epoch_best.calls)

    model = {"batch_norm": True}
    one = make_config({"epochs": 1, "batchnorm": "freeze"}, model=model)
    three = make_config({"epochs": 3, "batchnorm": "freeze"}, model=model)
    last_epoch_best.calls = 0
    after_one = run(one, score_fn=last_epoch_best).model.net[1]
    last_epoch_best.calls = 0
    after_three = run(three, score_fn=last_epoch_best).model.net[1]

    assert torch.equal(after_three.running_mean, after_one.running_mean)
    assert torch.equal(after_three.running_var, after_one.running_var)
    assert not torch.equal(after_three.weight, after_one.weight)


def test_batch_norm_with_accumulation_warns(caplog):
    config = make_config(
        {"epochs": 1, "accumulation_steps": 2}, model={"batch_norm": True}
    )
    with caplog.at_level(logging.WARNING, logger="workers.engine.trainer"):
        run(config)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(
            "trainer.batch_norm_with_accumulation accumulation_steps=2 batch_size=32 "
            "batchnorm=keep"
        )
        for m in messages
    )


def test_batch_norm_trains_with_a_one_row_tail_and_group_norm_trains():
    # 200 rows in micro-batches of 199 leave a 1-row tail.
    bn = make_config({"epochs": 1, "batch_size": 199}, model={"batch_norm": True})
    assert isinstance(run(bn), FitResult)
    gn = make_config(
        {"epochs": 1, "batchnorm": "group_norm"},
        model={"batch_norm": True, "hidden_sizes": [32]},
    )
    assert math.isfinite(run(gn).history[0].train_loss)
