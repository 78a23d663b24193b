"""Training end to end: golden trajectory vs PyTorch, exact resume, NaN guard, metrics, callbacks."""

from __future__ import annotations

import numpy as np
import pytest

import striate
import striate.functional as F
from striate import optim
from striate.data import ArrayDataset, DataLoader
from striate.models import LeNet5, get_model
from striate.train.loop import EarlyStopping, ModelCheckpoint, Trainer, TrainingDiverged, evaluate, predict
from striate.train.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
from harness import needs_torch, torch


def _torch_lenet(tnn):
    class TorchLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = tnn.Conv2d(6, 16, 5)
            self.fc1 = tnn.Linear(400, 120)
            self.fc2 = tnn.Linear(120, 84)
            self.fc3 = tnn.Linear(84, 10)

        def forward(self, x):
            f = torch.nn.functional
            x = f.max_pool2d(f.relu(self.conv1(x)), 2)
            x = f.max_pool2d(f.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.fc3(f.relu(self.fc2(f.relu(self.fc1(x)))))

    return TorchLeNet()


@needs_torch
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float64, 1e-9)])
def test_lenet_sgd_momentum_follows_torch_loss_trajectory_for_50_steps(dtype, tol):
    striate.manual_seed(0)
    model = LeNet5().to(dtype)
    tmodel = _torch_lenet(torch.nn).to(torch.float32 if dtype == np.float32 else torch.float64)
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for step in range(50):
        x = rng.random((16, 1, 28, 28)).astype(dtype)
        y = rng.integers(0, 10, 16)
        loss = F.cross_entropy(model(striate.tensor(x)), striate.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        ours.append(loss.item())
        theirs.append(tloss.item())
    ours, theirs = np.array(ours), np.array(theirs)
    assert ours[-1] < ours[0], "the loss should fall on this fixed-seed problem"
    rel = np.abs(ours - theirs) / np.abs(theirs)
    assert rel.max() <= tol, f"max relative loss difference {rel.max():.3g} at step {rel.argmax()}"


def _toy_problem(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 12, 12)).astype(np.float32) * 0.5
    x[np.arange(n), 0, 2 + 3 * y, :] += 1.5  # a class-dependent bright row
    return ArrayDataset(x, y, classes=["a", "b", "c"])


class _TinyNet(striate.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = striate.nn.Conv2d(1, 4, 3)
        self.bn = striate.nn.BatchNorm2d(4)
        self.drop = striate.nn.Dropout(0.2)
        self.fc = striate.nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(self.drop(F.flatten(h, 1)))


def _trainer(out_dir, callbacks=(), lr=0.05, epochs_hint=3):
    striate.manual_seed(1)
    model = _TinyNet()
    data = _toy_problem()
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=np.random.default_rng(7), prefetch=2)
    val = DataLoader(_toy_problem(48, seed=1), batch_size=32)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs_hint * len(loader))
    return Trainer(model, opt, loader, val_loader=val, scheduler=sched, scheduler_interval="step",
                   out_dir=out_dir, callbacks=list(callbacks), progress=False, model_name="tiny",
                   model_config={"k": 1}, log=lambda m: None)


class _StopAfter(striate.train.loop.Callback):
    """Simulates a crash: raises after ``n`` steps (after the step-checkpoint callback ran)."""

    def __init__(self, n):
        self.n = n

    def on_step_end(self, trainer, loss):
        if trainer.step == self.n:
            raise KeyboardInterrupt


def test_interrupt_and_resume_gives_bit_identical_weights_and_history(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit(3)
    broken = _trainer(tmp_path / "broken", callbacks=[ModelCheckpoint(every_steps=4), _StopAfter(10)])
    with pytest.raises(KeyboardInterrupt):
        broken.fit(3)  # dies mid-epoch 2 (6 steps per epoch), after the checkpoint at step 8
    resumed = _trainer(tmp_path / "broken", callbacks=[ModelCheckpoint(every_steps=4)])
    resumed.resume()
    assert (resumed.epoch, resumed.step) == (1, 8)
    resumed.fit(3)
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert [r["val_loss"] for r in full.history] == [r["val_loss"] for r in resumed.history]


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path / "run")
    trainer.fit(1)  # writes nothing by itself: checkpoint explicitly
    trainer.save_checkpoint()
    saved = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    weights_before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    trainer.model.fc.weight.data[...] = np.nan
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 7"):
        trainer.fit(2)
    fresh = _trainer(tmp_path / "run")
    fresh.resume()
    for k, v in fresh.model.state_dict().items():
        np.testing.assert_array_equal(v, saved[k])
    assert weights_before  # the checkpoint still holds the pre-NaN weights


def test_early_stopping_and_csv_log(tmp_path):
    trainer = _trainer(tmp_path / "run", callbacks=[EarlyStopping(monitor="train_loss", patience=0, min_delta=10.0)])
    trainer.fit(5)
    assert len(trainer.history) == 2, "no epoch improves by 10, so training stops after patience 0"
    lines = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,train_loss,train_acc,val_loss,val_acc")
    assert len(lines) == 3


def test_training_learns_toy_problem_and_evaluate_predict():
    trainer = _trainer(None)
    trainer.fit(4)
    result = evaluate(trainer.model, trainer.val_loader)
    assert result["accuracy"] > 0.9 and result["confusion"].sum() == 48
    probs = predict(trainer.model, _toy_problem(8, seed=3).images)
    assert probs.shape == (8, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="out_dir"):
        trainer.save_checkpoint()


def test_metrics():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = np.array([1, 0, 1, 1])
    assert topk_accuracy(logits, labels, 1) == 0.5
    assert topk_accuracy(logits, labels, 2) == 1.0
    cm = confusion_matrix(logits.argmax(1), labels, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    acc = per_class_accuracy(cm)
    assert acc[0] == 1.0 and acc[1] == pytest.approx(1 / 3) and np.isnan(acc[2])
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3,\)"):
        topk_accuracy(logits, labels[:3])


def test_model_registry():
    model = get_model("lenet5", num_classes=5)
    assert model.fc3.out_features == 5 and model.model_name == "lenet5"
    with pytest.raises(ValueError, match="unknown model 'nope'.*lenet5"):
        get_model("nope")
