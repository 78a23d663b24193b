"""striate.optim against torch.optim: updates, state dicts, schedules, clipping and errors.

Every optimizer comparison feeds identical seeded gradients to a striate and a torch optimizer
for 20 steps and compares the parameters after each step (float64: rtol 1e-10; float32: 1e-5).
Schedules are compared lr by lr (and momentum by momentum) over 100 steps, exactly.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import striate
from striate import Tensor
from striate.nn import Parameter
from striate import optim
from striate.optim import lr_scheduler as sched

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 20
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}

OPTIMIZERS = {
    "SGD": (optim.SGD, torch.optim.SGD),
    "Adam": (optim.Adam, torch.optim.Adam),
    "AdamW": (optim.AdamW, torch.optim.AdamW),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop),
}

CONFIGS = [
    ("SGD", {}),
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("Adam", {}),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3)),
    ("Adam", dict(lr=0.01, maximize=True, amsgrad=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", {}),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
    ("RMSprop", {}),
    ("RMSprop", dict(lr=0.001, momentum=0.9)),
    ("RMSprop", dict(lr=0.001, centered=True)),
    ("RMSprop", dict(lr=0.001, centered=True, momentum=0.5, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.001, alpha=0.9, eps=1e-4, maximize=True)),
]


def _config_id(cfg):
    name, kw = cfg
    return name + ("-" + ",".join(f"{k}={v}" for k, v in kw.items()) if kw else "-defaults")


def _initial_arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grad_stream(dtype, seed=1):
    """The gradients of each step; parameter 2 has no gradient on some steps (it is skipped)."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(2 * STEPS + 2):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        if step % 5 == 3:
            grads[2] = None
        out.append(grads)
    return out


def _groups(params, grouped: bool):
    """Either a plain parameter list, or two groups with their own lr (and momentum-like option)."""
    if not grouped:
        return list(params)
    return [{"params": [params[0]]}, {"params": [params[1], params[2]], "lr": 0.003}]


def _set_grads(s_params, t_params, grads):
    for sp, tp, g in zip(s_params, t_params, grads):
        if g is None:
            sp.grad, tp.grad = None, None
        else:
            sp.grad = Tensor(g.copy())
            tp.grad = torch.from_numpy(g.copy())


def _make_pair(name, kwargs, dtype, grouped):
    s_cls, t_cls = OPTIMIZERS[name]
    arrays = _initial_arrays(dtype)
    s_params = [Parameter(a.copy()) for a in arrays]
    t_params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    s_opt = s_cls(_groups(s_params, grouped), **kwargs)
    t_opt = t_cls(_groups(t_params, grouped), **kwargs)
    return s_opt, t_opt, s_params, t_params


def _assert_params_close(s_params, t_params, dtype, msg=""):
    for i, (sp, tp) in enumerate(zip(s_params, t_params)):
        assert sp.dtype == dtype, f"param {i} changed dtype to {sp.dtype}"
        np.testing.assert_allclose(sp.data, tp.detach().numpy(), **TOL[dtype], err_msg=f"param {i} {msg}")


# ------------------------------------------------------------------ updates vs torch
@pytest.mark.parametrize("grouped", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_update_matches_torch(config, dtype, grouped):
    name, kwargs = config
    s_opt, t_opt, s_params, t_params = _make_pair(name, kwargs, dtype, grouped)
    for step, grads in enumerate(_grad_stream(dtype)[:STEPS]):
        _set_grads(s_params, t_params, grads)
        s_opt.step()
        t_opt.step()
        _assert_params_close(s_params, t_params, dtype, f"after step {step + 1}")
    # the state holds the same buffers as torch's
    t_sd, s_sd = t_opt.state_dict(), s_opt.state_dict()
    assert set(s_sd["state"]) == set(t_sd["state"])
    for idx, t_entry in t_sd["state"].items():
        assert set(s_sd["state"][idx]) == set(t_entry), (s_sd["state"][idx].keys(), t_entry.keys())
        for key, value in t_entry.items():
            if key == "step":
                assert s_sd["state"][idx]["step"] == float(value)
            elif value is not None:
                assert s_sd["state"][idx][key].dtype == dtype
                np.testing.assert_allclose(s_sd["state"][idx][key], value.numpy(), **TOL[dtype])


def test_per_group_hyperparameters_match_torch():
    """Groups that override momentum/betas/weight decay, not only lr."""
    dtype = np.float64
    for name, groups in [
        ("SGD", [{"lr": 0.1}, {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}]),
        ("Adam", [{"lr": 0.1, "amsgrad": True}, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}]),
        ("RMSprop", [{"lr": 0.01, "centered": True}, {"lr": 0.001, "momentum": 0.9, "alpha": 0.95}]),
    ]:
        s_cls, t_cls = OPTIMIZERS[name]
        arrays = _initial_arrays(dtype)
        s_params = [Parameter(a.copy()) for a in arrays]
        t_params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
        split = [[0], [1, 2]]
        s_opt = s_cls([dict(g, params=[s_params[i] for i in ix]) for g, ix in zip(groups, split)])
        t_opt = t_cls([dict(g, params=[t_params[i] for i in ix]) for g, ix in zip(groups, split)])
        for grads in _grad_stream(dtype)[:STEPS]:
            _set_grads(s_params, t_params, grads)
            s_opt.step()
            t_opt.step()
        _assert_params_close(s_params, t_params, dtype, name)


def test_float32_stays_float32():
    for name, (cls, _) in OPTIMIZERS.items():
        p = Parameter(np.ones((4, 3), dtype=np.float32))
        opt = cls([p], lr=0.1, weight_decay=0.1, **({"momentum": 0.9} if name in ("SGD", "RMSprop") else {}))
        for _ in range(3):
            p.grad = Tensor(np.full((4, 3), 0.5, dtype=np.float32))
            opt.step()
        assert p.dtype == np.float32, name
        for key, value in opt.state[p].items():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32, (name, key)


def test_update_is_in_place_on_the_callers_array():
    array = np.ones(3)
    p = Parameter(array)
    opt = optim.SGD([p], lr=0.5)
    p.grad = Tensor(np.ones(3))
    opt.step()
    np.testing.assert_array_equal(array, 0.5)
    assert p.data is array


def test_step_creates_no_graph_and_closure_runs_with_grad():
    p = Parameter(np.array([1.0, -2.0, 3.0]))
    opt = optim.SGD([p], lr=0.1)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append(striate.is_grad_enabled())
        loss = (p * p).sum()
        loss.backward()
        return loss

    with striate.no_grad():
        loss = opt.step(closure)
    assert seen == [True]
    assert float(loss) == pytest.approx(14.0)
    np.testing.assert_allclose(p.data, [0.8, -1.6, 2.4])
    assert p.is_leaf and p.grad_fn is None


def test_zero_grad():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.SGD([p, q])
    p.grad = Tensor(np.ones(2))
    g = p.grad.data
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.data is g
    np.testing.assert_array_equal(g, 0)
    assert q.grad is None
    opt.zero_grad()
    assert p.grad is None


def test_params_without_grad_are_skipped_and_get_no_state():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(q.data, 1.0)
    assert q not in opt.state
    assert list(opt.state_dict()["state"]) == [0]


def test_add_param_group_and_defaults():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": q, "lr": 0.01})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["params"] == [q] or opt.param_groups[1]["params"][0] is q
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    assert opt.param_groups[1]["nesterov"] is False
    assert opt.defaults == dict(lr=0.1, momentum=0.9, dampening=0, weight_decay=0, nesterov=False,
                                maximize=False)


def test_defaults_match_torch():
    p = Parameter(np.ones(2))
    tp = torch.nn.Parameter(torch.ones(2))
    torch_only = {"foreach", "differentiable", "fused", "capturable"}
    for name, (s_cls, t_cls) in OPTIMIZERS.items():
        ours, theirs = s_cls([p]).defaults, t_cls([tp]).defaults
        assert set(ours) == set(theirs) - torch_only, name
        for key in ours:
            assert ours[key] == theirs[key], (name, key)


def test_named_parameters():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.SGD([("w", p), ("b", q)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


# ------------------------------------------------------------------ state dicts
ROUNDTRIP_CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.001, centered=True, momentum=0.5)),
]


def _json_checkpoint(state_dict):
    """Store a state dict as safetensors-like arrays plus JSON and read it back."""
    arrays, meta = optim.split_state_dict(state_dict)
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    meta = json.loads(json.dumps(meta))
    arrays = {k: v.copy() for k, v in arrays.items()}
    return optim.merge_state_dict(arrays, meta)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", ROUNDTRIP_CONFIGS, ids=_config_id)
def test_state_dict_round_trip_continues_identically(config, dtype):
    name, kwargs = config
    cls = OPTIMIZERS[name][0]
    grads = _grad_stream(dtype)

    def build(arrays):
        params = [Parameter(a.copy()) for a in arrays]
        return cls(_groups(params, True), **kwargs), params

    full_opt, full_params = build(_initial_arrays(dtype))
    for g in grads[:2 * STEPS]:
        for p, gi in zip(full_params, g):
            p.grad = None if gi is None else Tensor(gi.copy())
        full_opt.step()

    opt, params = build(_initial_arrays(dtype))
    for g in grads[:STEPS]:
        for p, gi in zip(params, g):
            p.grad = None if gi is None else Tensor(gi.copy())
        opt.step()
    saved = opt.state_dict()
    saved_params = [p.data.copy() for p in params]
    saved_copy = copy.deepcopy(saved)
    checkpoint = _json_checkpoint(saved)
    opt.step()  # the saved dict holds copies: stepping on does not change it
    for idx, entry in saved["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(value, saved_copy["state"][idx][key])

    resumed, resumed_params = build(saved_params)
    resumed.load_state_dict(checkpoint)
    assert resumed.param_groups[0].keys() == opt.param_groups[0].keys()
    for g in grads[STEPS:2 * STEPS]:
        for p, gi in zip(resumed_params, g):
            p.grad = None if gi is None else Tensor(gi.copy())
        resumed.step()
    for a, b in zip(resumed_params, full_params):
        np.testing.assert_array_equal(a.data, b.data)
    for (ka, va), (kb, vb) in zip(resumed.state_dict()["state"].items(), full_opt.state_dict()["state"].items()):
        assert ka == kb
        for key in va:
            np.testing.assert_array_equal(va[key], vb[key])


def _torch_state_to_numpy(sd):
    state = {i: {k: (float(v) if k == "step" else v.numpy().copy()) for k, v in entry.items() if v is not None}
             for i, entry in sd["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


@pytest.mark.parametrize("config", ROUNDTRIP_CONFIGS, ids=_config_id)
def test_loads_a_torch_state_dict(config):
    """A torch.optim state dict (tensors turned into arrays) resumes in striate as in torch."""
    name, kwargs = config
    dtype = np.float64
    s_opt, t_opt, s_params, t_params = _make_pair(name, kwargs, dtype, True)
    grads = _grad_stream(dtype)
    for g in grads[:STEPS]:
        _set_grads(s_params, t_params, g)
        t_opt.step()
    for sp, tp in zip(s_params, t_params):
        sp.data[...] = tp.detach().numpy()
    s_opt.load_state_dict(_torch_state_to_numpy(t_opt.state_dict()))
    for g in grads[STEPS:2 * STEPS]:
        _set_grads(s_params, t_params, g)
        s_opt.step()
        t_opt.step()
    _assert_params_close(s_params, t_params, dtype)


def test_state_dict_structure():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.1}])
    p.grad, q.grad = Tensor(np.ones(2)), Tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0, 1]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    arrays, meta = optim.split_state_dict(sd)
    assert sorted(arrays) == ["state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg", "state.1.exp_avg_sq"]
    assert meta["state"] == {"0": {"step": 1.0}, "1": {"step": 1.0}}
    json.dumps(meta)
    back = _json_checkpoint(sd)
    opt2 = optim.Adam([{"params": [Parameter(np.ones(2))]}, {"params": [Parameter(np.ones(3))]}])
    opt2.load_state_dict(back)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)  # tuple again after JSON
    assert opt2.param_groups[1]["lr"] == 0.1


def test_load_state_dict_mismatch_errors():
    p, q = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = optim.SGD([p, q], momentum=0.9)
    p.grad, q.grad = Tensor(np.ones(2)), Tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [Parameter(np.ones(2))]}, {"params": [Parameter(np.ones(3))]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.SGD([Parameter(np.ones(2))]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(4,\)"):
        optim.SGD([Parameter(np.ones(2)), Parameter(np.ones(4))]).load_state_dict(sd)


# ------------------------------------------------------------------ schedulers
def _sched_pair(make, opt_name="SGD", opt_kwargs=None, lrs=(0.1, 0.05)):
    opt_kwargs = dict(momentum=0.9) if opt_kwargs is None and opt_name == "SGD" else (opt_kwargs or {})
    s_cls, t_cls = OPTIMIZERS[opt_name]
    s_groups = [{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs]
    t_groups = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "lr": lr} for lr in lrs]
    s_opt, t_opt = s_cls(s_groups, **opt_kwargs), t_cls(t_groups, **opt_kwargs)
    return s_opt, make(sched, s_opt), t_opt, make(torch.optim.lr_scheduler, t_opt)


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _run_schedule(opt, scheduler, steps, metrics=None):
    lrs, moms = [list(scheduler.get_last_lr())], [_momenta(opt)]
    for i in range(steps):
        opt.step()
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[i])
        lrs.append(list(scheduler.get_last_lr()))
        assert lrs[-1] == [g["lr"] for g in opt.param_groups]
        moms.append(_momenta(opt))
    return lrs, moms


SCHEDULES = {
    "StepLR": (lambda m, o: m.StepLR(o, step_size=7, gamma=0.5), "SGD", None),
    "StepLR-default-gamma": (lambda m, o: m.StepLR(o, 10), "SGD", None),
    "MultiStepLR": (lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 60], gamma=0.3), "SGD", None),
    "ExponentialLR": (lambda m, o: m.ExponentialLR(o, gamma=0.97), "SGD", None),
    "LinearLR": (lambda m, o: m.LinearLR(o, start_factor=0.2, total_iters=10), "SGD", None),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, lambda e: 0.95**e), "SGD", None),
    "LambdaLR-per-group": (lambda m, o: m.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.9**e]), "SGD", None),
    "CosineAnnealingLR-wraps": (lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-4), "SGD", None),
    "CosineAnnealingLR": (lambda m, o: m.CosineAnnealingLR(o, T_max=100), "SGD", None),
    "OneCycleLR": (lambda m, o: m.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=100), "SGD", None),
    "OneCycleLR-three-phase-linear": (
        lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=100, three_phase=True, anneal_strategy="linear",
                                  pct_start=0.25, div_factor=10.0, final_div_factor=100.0), "SGD", None),
    "OneCycleLR-epochs-Adam": (
        lambda m, o: m.OneCycleLR(o, max_lr=0.01, epochs=10, steps_per_epoch=10, base_momentum=0.8,
                                  max_momentum=0.9), "Adam", {}),
    "OneCycleLR-RMSprop-no-momentum-cycle": (
        lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=100, cycle_momentum=False), "RMSprop", {}),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name):
    make, opt_name, opt_kwargs = SCHEDULES[name]
    s_opt, s_sched, t_opt, t_sched = _sched_pair(make, opt_name, opt_kwargs)
    s_lrs, s_moms = _run_schedule(s_opt, s_sched, 100)
    t_lrs, t_moms = _run_schedule(t_opt, t_sched, 100)
    assert s_lrs == t_lrs  # exactly: the same float64 operations in the same order
    assert s_moms == t_moms
    assert [g["initial_lr"] for g in s_opt.param_groups] == [g["initial_lr"] for g in t_opt.param_groups]


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "CosineAnnealingLR-wraps", "ExponentialLR", "LinearLR"])
def test_closed_form_step_epoch_matches_torch(name):
    make = SCHEDULES[name][0]
    s_opt, s_sched, t_opt, t_sched = _sched_pair(make)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in [3, 17, 40, 7, 61, 90]:
            s_opt.step(), t_opt.step()
            s_sched.step(epoch)
            t_sched.step(epoch)
            assert s_sched.get_last_lr() == t_sched.get_last_lr(), epoch


def _loss_curve(n=100, seed=3):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return list(np.maximum(np.exp(-t / 15.0), 0.2) + 0.01 * rng.standard_normal(n))


PLATEAU_CONFIGS = [
    dict(),
    dict(patience=3, factor=0.5),
    dict(patience=2, factor=0.5, cooldown=3, min_lr=[1e-3, 2e-3]),
    dict(patience=1, factor=0.3, threshold=0.05, threshold_mode="abs", min_lr=1e-4),
    dict(mode="max", patience=2, factor=0.5),
    dict(mode="max", patience=0, threshold_mode="abs", threshold=0.0, eps=1e-3),
]


@pytest.mark.parametrize("kwargs", PLATEAU_CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    losses = _loss_curve()
    metrics = [-x for x in losses] if kwargs.get("mode") == "max" else losses
    make = lambda m, o: m.ReduceLROnPlateau(o, **kwargs)  # noqa: E731
    s_opt, s_sched, t_opt, t_sched = _sched_pair(make)
    s_lrs, _ = _run_schedule(s_opt, s_sched, 100, metrics)
    t_lrs, _ = _run_schedule(t_opt, t_sched, 100, metrics)
    assert s_lrs == t_lrs
    assert len({tuple(x) for x in s_lrs}) > 1  # the schedule did reduce the lr
    assert s_sched.best == t_sched.best and s_sched.num_bad_epochs == t_sched.num_bad_epochs


def test_reduce_lr_on_plateau_accepts_a_tensor_metric():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    s = sched.ReduceLROnPlateau(opt, patience=0)
    s.step(Tensor(np.array(1.0)))
    s.step(np.float32(2.0))
    assert s.get_last_lr() == [0.1]


@pytest.mark.parametrize("name", list(SCHEDULES) + ["ReduceLROnPlateau"])
def test_scheduler_state_dict_round_trip(name):
    if name == "ReduceLROnPlateau":
        make, opt_name, opt_kwargs = (lambda m, o: m.ReduceLROnPlateau(o, patience=2, cooldown=1)), "SGD", None
        metrics = _loss_curve()
    else:
        make, opt_name, opt_kwargs = SCHEDULES[name]
        metrics = None

    def step(o, s, i):
        o.step()
        s.step() if metrics is None else s.step(metrics[i])

    opt, s, _, _ = _sched_pair(make, opt_name, opt_kwargs)
    full = []
    for i in range(100):
        step(opt, s, i)
        full.append((s.get_last_lr(), _momenta(opt)))

    opt, s, _, _ = _sched_pair(make, opt_name, opt_kwargs)
    for i in range(40):
        step(opt, s, i)
    opt_ckpt = _json_checkpoint(opt.state_dict())
    sched_ckpt = json.loads(json.dumps(s.state_dict()))

    opt2, s2, _, _ = _sched_pair(make, opt_name, opt_kwargs, lrs=(1.0, 1.0))
    opt2.load_state_dict(opt_ckpt)
    s2.load_state_dict(sched_ckpt)
    for i in range(40, 100):
        step(opt2, s2, i)
        assert (s2.get_last_lr(), _momenta(opt2)) == full[i], i


def test_scheduler_warns_when_stepped_before_optimizer():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    s = sched.StepLR(opt, 2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        s.step()


# ------------------------------------------------------------------ clipping
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 3.5, 0.5, 0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    s_params = [Parameter(np.zeros(s, dtype)) for s in SHAPES]
    t_params = [torch.nn.Parameter(torch.zeros(s, dtype=TORCH_DTYPE[dtype])) for s in SHAPES]
    grads[1] = None
    _set_grads(s_params, t_params, grads)
    s_total = optim.clip_grad_norm_(s_params, max_norm, norm_type=norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(t_params, max_norm, norm_type=norm_type)
    assert isinstance(s_total, Tensor) and s_total.shape == () and s_total.dtype == dtype
    np.testing.assert_allclose(s_total.data, t_total.numpy(), **TOL[dtype])
    for sp, tp in zip(s_params, t_params):
        if tp.grad is None:
            assert sp.grad is None
        else:
            assert sp.grad.dtype == dtype
            np.testing.assert_allclose(sp.grad.data, tp.grad.numpy(), **TOL[dtype])


def test_clip_grad_norm_nonfinite():
    p = Parameter(np.zeros(3))
    p.grad = Tensor(np.array([1.0, np.inf, 2.0]))
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    tp = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    tp.grad = torch.tensor([1.0, math.inf, 2.0], dtype=torch.float64)
    total = optim.clip_grad_norm_(p, 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    assert float(total) == float(t_total) == math.inf
    np.testing.assert_array_equal(p.grad.data, tp.grad.numpy())  # nan where inf, 0 elsewhere


def test_clip_grad_norm_no_grads():
    total = optim.clip_grad_norm_([Parameter(np.zeros(2))], 1.0)
    assert float(total) == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_clip_grad_value_matches_torch(dtype):
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    s_params = [Parameter(np.zeros(s, dtype)) for s in SHAPES]
    t_params = [torch.nn.Parameter(torch.zeros(s, dtype=TORCH_DTYPE[dtype])) for s in SHAPES]
    _set_grads(s_params, t_params, grads)
    optim.clip_grad_value_(s_params, 0.3)
    torch.nn.utils.clip_grad_value_(t_params, 0.3)
    for sp, tp in zip(s_params, t_params):
        assert sp.grad.dtype == dtype
        np.testing.assert_array_equal(sp.grad.data, tp.grad.numpy())


# ------------------------------------------------------------------ errors
def _p():
    return Parameter(np.ones(2))


def _sgd():
    return optim.SGD([_p()], lr=0.1, momentum=0.9)


INVALID = [
    ("sgd-negative-lr", lambda: optim.SGD([_p()], lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    ("sgd-negative-momentum", lambda: optim.SGD([_p()], momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
    ("sgd-negative-wd", lambda: optim.SGD([_p()], weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    ("sgd-nesterov-no-momentum", lambda: optim.SGD([_p()], nesterov=True), ValueError, "Nesterov momentum requires"),
    ("sgd-nesterov-dampening", lambda: optim.SGD([_p()], momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "dampening=0.1"),
    ("sgd-group-nesterov", lambda: optim.SGD([{"params": [_p()], "nesterov": True}]), ValueError, "Nesterov"),
    ("sgd-group-negative-lr", lambda: optim.SGD([{"params": [_p()]}, {"params": [_p()], "lr": -1.0}]),
     ValueError, "Invalid learning rate: -1.0"),
    ("sgd-nan-lr", lambda: optim.SGD([_p()], lr=float("nan")), ValueError, "learning rate"),
    ("sgd-string-lr", lambda: optim.SGD([_p()], lr="0.1"), TypeError, "learning rate"),
    ("adam-negative-lr", lambda: optim.Adam([_p()], lr=-1e-3), ValueError, "Invalid learning rate: -0.001"),
    ("adam-beta1", lambda: optim.Adam([_p()], betas=(1.0, 0.999)), ValueError, "beta parameter at index 0: 1.0"),
    ("adam-beta2", lambda: optim.Adam([_p()], betas=(0.9, -0.1)), ValueError, "beta parameter at index 1: -0.1"),
    ("adam-betas-length", lambda: optim.Adam([_p()], betas=(0.9,)), ValueError, "pair"),
    ("adam-eps", lambda: optim.Adam([_p()], eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    ("adam-wd", lambda: optim.Adam([_p()], weight_decay=-0.1), ValueError, "Invalid weight_decay value: -0.1"),
    ("adamw-beta", lambda: optim.AdamW([_p()], betas=(0.9, 1.5)), ValueError, "index 1: 1.5"),
    ("rmsprop-lr", lambda: optim.RMSprop([_p()], lr=-0.01), ValueError, "Invalid learning rate: -0.01"),
    ("rmsprop-alpha", lambda: optim.RMSprop([_p()], alpha=-0.5), ValueError, "Invalid alpha value: -0.5"),
    ("rmsprop-momentum", lambda: optim.RMSprop([_p()], momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
    ("rmsprop-eps", lambda: optim.RMSprop([_p()], eps=-1.0), ValueError, "Invalid epsilon value: -1.0"),
    ("rmsprop-wd", lambda: optim.RMSprop([_p()], weight_decay=-1e-4), ValueError, "weight_decay value: -0.0001"),
    ("empty-params", lambda: optim.SGD([]), ValueError, "optimizer got an empty parameter list"),
    ("empty-generator", lambda: optim.Adam(iter([])), ValueError, "optimizer got an empty parameter list"),
    ("param-in-two-groups", lambda: (lambda p: optim.SGD([{"params": [p]}, {"params": [_p(), p]}]))(_p()),
     ValueError, "more than one parameter group: parameter 1 of the new group"),
    ("ndarray-param", lambda: optim.SGD([np.ones(2)]), TypeError, "only optimize Tensors.*ndarray"),
    ("single-tensor", lambda: optim.SGD(_p()), TypeError, "iterable of Tensors or dicts"),
    ("set-of-params", lambda: optim.SGD([{"params": {_p()}}]), TypeError, "ordered collections"),
    ("non-leaf", lambda: optim.SGD([_p() * 2]), ValueError, "non-leaf"),
    ("fused", lambda: optim.Adam([_p()], fused=True), ValueError, "fused"),
    ("onecycle-no-steps", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1), ValueError,
     r"total_steps OR \(epochs AND steps_per_epoch\)"),
    ("onecycle-epochs-only", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1, epochs=3), ValueError, "total_steps OR"),
    ("onecycle-zero-steps", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1, total_steps=0), ValueError,
     "positive integer total_steps, but got 0"),
    ("onecycle-float-epochs", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1, epochs=2.5, steps_per_epoch=4),
     ValueError, "epochs, but got 2.5"),
    ("onecycle-pct", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1, total_steps=10, pct_start=1.5), ValueError,
     "pct_start, but got 1.5"),
    ("onecycle-anneal", lambda: sched.OneCycleLR(_sgd(), max_lr=0.1, total_steps=10, anneal_strategy="exp"),
     ValueError, "'exp'"),
    ("onecycle-max-lr-len", lambda: sched.OneCycleLR(_sgd(), max_lr=[0.1, 0.2], total_steps=10), ValueError,
     "max_lr has 2 values, param_groups has 1"),
    ("multistep-unsorted", lambda: sched.MultiStepLR(_sgd(), milestones=[30, 10]), ValueError,
     r"increasing integers. Got \[30, 10\]"),
    ("multistep-float", lambda: sched.MultiStepLR(_sgd(), milestones=[1.5]), TypeError, "integers"),
    ("steplr-zero", lambda: sched.StepLR(_sgd(), step_size=0), ValueError, "step_size, but got 0"),
    ("cosine-tmax", lambda: sched.CosineAnnealingLR(_sgd(), T_max=0), ValueError, "T_max, but got 0"),
    ("linear-start", lambda: sched.LinearLR(_sgd(), start_factor=0), ValueError, "got 0"),
    ("lambda-count", lambda: sched.LambdaLR(_sgd(), [lambda e: 1, lambda e: 1]), ValueError, "Expected 1 lr_lambdas"),
    ("not-an-optimizer", lambda: sched.StepLR(object(), 3), TypeError, "object is not an Optimizer"),
    ("plateau-factor", lambda: sched.ReduceLROnPlateau(_sgd(), factor=1.0), ValueError, "Factor should be < 1.0"),
    ("plateau-mode", lambda: sched.ReduceLROnPlateau(_sgd(), mode="up"), ValueError, "mode 'up' is unknown"),
    ("plateau-threshold-mode", lambda: sched.ReduceLROnPlateau(_sgd(), threshold_mode="pct"), ValueError,
     "threshold mode 'pct'"),
    ("plateau-min-lr-len", lambda: sched.ReduceLROnPlateau(_sgd(), min_lr=[0.1, 0.2]), ValueError,
     "expected 1 min_lrs, got 2"),
    ("plateau-patience", lambda: sched.ReduceLROnPlateau(_sgd(), patience=-1), ValueError, "patience.*-1"),
    ("resume-without-initial-lr", lambda: sched.StepLR(_sgd(), 3, last_epoch=5), KeyError, "initial_lr"),
]


@pytest.mark.parametrize("make,exc,match", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_onecycle_stepping_past_total_steps_raises():
    opt = _sgd()
    s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        s.step()
    opt.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        s.step()


def test_grad_shape_mismatch_raises():
    p = _p()
    opt = optim.SGD([p])
    p.grad = Tensor(np.ones(3))
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\) but the parameter has shape \(2,\)"):
        opt.step()


def test_duplicate_param_in_group_warns():
    p = _p()
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([p, p])


def test_pickle_and_deepcopy_after_a_scheduler_wrapped_step():
    p = Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    sched.StepLR(opt, 2)
    p.grad = Tensor(np.ones(2))
    opt.step()
    for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        (q,) = clone.param_groups[0]["params"]
        np.testing.assert_array_equal(clone.state[q]["momentum_buffer"], opt.state[p]["momentum_buffer"])
        assert clone.param_groups[0]["initial_lr"] == 0.1


# ------------------------------------------------------------------ property test
_unit = st.floats(0.0, 0.99)


@st.composite
def _random_optimizer(draw):
    name = draw(st.sampled_from(sorted(OPTIMIZERS)))
    kw = {"lr": draw(st.floats(0.0, 0.5)), "weight_decay": draw(st.sampled_from([0.0, draw(st.floats(0.0, 0.2))])),
          "maximize": draw(st.booleans())}
    if name == "SGD":
        kw["momentum"] = draw(st.sampled_from([0.0, draw(_unit)]))
        kw["nesterov"] = kw["momentum"] > 0 and draw(st.booleans())
        kw["dampening"] = 0.0 if kw["nesterov"] else draw(st.sampled_from([0.0, draw(_unit)]))
    elif name in ("Adam", "AdamW"):
        kw["betas"] = (draw(_unit), draw(st.floats(0.5, 0.999)))
        kw["eps"] = draw(st.sampled_from([1e-8, 1e-3]))
        kw["amsgrad"] = draw(st.booleans())
    else:
        kw["alpha"] = draw(st.floats(0.5, 0.999))
        kw["momentum"] = draw(st.sampled_from([0.0, draw(_unit)]))
        kw["centered"] = draw(st.booleans())
        kw["eps"] = draw(st.sampled_from([1e-8, 1e-3]))
    return name, kw


@settings(max_examples=40, deadline=None)
@given(config=_random_optimizer(), seed=st.integers(0, 2**16))
def test_random_hyperparameters_match_torch(config, seed):
    name, kwargs = config
    s_cls, t_cls = OPTIMIZERS[name]
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in SHAPES]
    s_params = [Parameter(a.copy()) for a in arrays]
    t_params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    s_opt, t_opt = s_cls(s_params, **kwargs), t_cls(t_params, **kwargs)
    for _ in range(5):
        _set_grads(s_params, t_params, [rng.standard_normal(s) for s in SHAPES])
        s_opt.step()
        t_opt.step()
    for sp, tp in zip(s_params, t_params):
        np.testing.assert_allclose(sp.data, tp.detach().numpy(), rtol=1e-9, atol=1e-12)
