"""striate vs PyTorch, side by side in one process: kernels and whole training steps.

Run it through ``bench/run.sh`` (which unsets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``
so that OpenBLAS picks its kernels for this CPU) or directly::

    bench/run.sh                 # the full suite, ~5 minutes; writes bench/results/latest.{md,json}
    bench/run.sh --quick         # fewer repetitions (a smoke test of the suite)
    bench/run.sh --only conv     # items whose name matches a regular expression

Method
------
* Both frameworks run in this one process with 2 threads each: ``torch.set_num_threads(2)`` and
  ``striate.kernels.parallel.set_num_threads(2)`` (OpenBLAS itself keeps its 2 threads).
* Every item is warmed up, then timed in alternating blocks (striate, PyTorch, PyTorch,
  striate, ...) of repeated calls with a short pause between blocks so that neither side's
  spinning worker threads steal the other's cores; the figure reported is the median of all
  calls, and the ratio is striate's median over PyTorch's.  Eight rounds of blocks per item:
  the machine this was written on drifts between fast and slow phases of tens of seconds
  (single-item ratios moved by up to 30 % between whole runs with four rounds), and finer
  alternation pairs both frameworks with the same phase.
* GFLOP/s counts the multiply-adds of convolutions and linear layers (2 FLOPs each); a
  convolution's forward+backward is 3x its forward (dX and dW cost one forward each), a
  training step 3x the forward of every conv/linear layer.  "% peak" divides by the SGEMM rate
  measured here at the start (NumPy, 2 threads, 2048^3) -- the machine's practical peak.
* Peak memory of a training step is measured in a fresh subprocess per framework and model,
  with glibc told to serve every block over 64 KiB by ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so
  freed memory goes back to the system at once: after a warm-up step on a tiny batch, the
  kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) and the figure is the peak RSS
  during one full step minus the RSS before it (activations, gradients, optimizer state and
  work buffers).  For striate the same step is also traced with ``tracemalloc`` (NumPy reports
  its array allocations to it), a second opinion that excludes the interpreter.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

THREADS = 2
PAUSE_S = 0.05


# ----------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg():
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def _sgemm_peak(np, threads):
    """GFLOP/s of NumPy's SGEMM, 2048^3, with the BLAS library at ``threads`` threads (best of 7)."""
    from striate.kernels import parallel

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = a.copy()
    with parallel.blas_threads(threads):
        a @ b
        times = []
        for _ in range(7):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2 * 2048 ** 3 / min(times) / 1e9


# ----------------------------------------------------------------------------------- timing
CLOCK = time.perf_counter  # --cpu: time.thread_time (CPU seconds of this thread, 1 thread each)


def _time_calls(fn, reps):
    out = []
    for _ in range(reps):
        t = CLOCK()
        fn()
        out.append(CLOCK() - t)
    return out


def compare(s_fn, t_fn, budget_s, rounds=8):
    """Median seconds of ``s_fn`` and ``t_fn`` timed in alternating blocks after a warm-up."""
    s_fn(), t_fn()
    ts = min(_time_calls(s_fn, 2))
    tt = min(_time_calls(t_fn, 2))
    per_round = budget_s / rounds / 2
    rs = max(2, min(50, int(per_round / max(ts, 1e-6))))
    rt = max(2, min(50, int(per_round / max(tt, 1e-6))))
    s_times, t_times = [], []
    for r in range(rounds):
        order = ((s_fn, rs, s_times), (t_fn, rt, t_times))
        if r % 2:
            order = order[::-1]
        for fn, reps, acc in order:
            time.sleep(PAUSE_S)
            fn()  # re-warm after the switch
            acc.extend(_time_calls(fn, reps))
    return (statistics.median(s_times), statistics.median(t_times), len(s_times), len(t_times),
            (min(s_times), min(t_times)))


# ----------------------------------------------------------------------------------- items
CONV_SHAPES = [
    # name, input (N, C, H, W), out channels, kernel, stride, padding
    ("LeNet conv1", (128, 1, 28, 28), 6, 5, 1, 2),
    ("LeNet conv2", (128, 6, 14, 14), 16, 5, 1, 0),
    ("ResNet 16ch 32x32", (128, 16, 32, 32), 16, 3, 1, 1),
    ("ResNet 32ch 16x16", (128, 32, 16, 16), 32, 3, 1, 1),
    ("ResNet 64ch 8x8", (128, 64, 8, 8), 64, 3, 1, 1),
    ("ResNet 16->32 stride 2", (128, 16, 32, 32), 32, 3, 2, 1),
    ("VGG 64ch 56x56", (32, 64, 56, 56), 64, 3, 1, 1),
    ("1x1 64->256 8x8", (128, 64, 8, 8), 256, 1, 1, 0),
]


def conv_items(ctx):
    np, torch, st, F = ctx["np"], ctx["torch"], ctx["striate"], ctx["F"]
    for name, xs, o, k, s, p in CONV_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs, dtype=np.float32)
        w = (rng.standard_normal((o, xs[1], k, k), dtype=np.float32) / np.sqrt(xs[1] * k * k)).astype(np.float32)
        b = np.zeros(o, np.float32)
        ho = (xs[2] + 2 * p - k) // s + 1
        wo = (xs[3] + 2 * p - k) // s + 1
        flops = 2 * xs[0] * o * ho * wo * xs[1] * k * k
        sx, sw, sb = (st.Tensor(a, requires_grad=True) for a in (x, w, b))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        dy = rng.standard_normal((xs[0], o, ho, wo), dtype=np.float32)
        tdy = torch.tensor(dy)

        def s_fwd():
            with st.no_grad():
                F.conv2d(sx, sw, sb, stride=s, padding=p)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)

        def s_fb():
            sx.grad = sw.grad = sb.grad = None
            F.conv2d(sx, sw, sb, stride=s, padding=p).backward(dy)

        def t_fb():
            tx.grad = tw.grad = tb.grad = None
            torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p).backward(tdy)

        shape = f"{xs[0]}x{xs[1]}x{xs[2]}x{xs[3]} -> {o}, {k}x{k}" + (f", stride {s}" if s > 1 else "") + \
            (f", pad {p}" if p else "")
        yield dict(group="conv", name=f"{name} fwd", shape=shape, flops=flops, s=s_fwd, t=t_fwd, budget=1.2)
        yield dict(group="conv", name=f"{name} fwd+bwd", shape=shape, flops=3 * flops, s=s_fb, t=t_fb, budget=2.0,
                   target=2.5 if name.startswith("LeNet") else 1.5)


def op_items(ctx):
    np, torch, st, F = ctx["np"], ctx["torch"], ctx["striate"], ctx["F"]
    tF = torch.nn.functional
    rng = np.random.default_rng(1)

    def unary(name, shape, s_op, t_op, target=None):
        x = rng.standard_normal(shape, dtype=np.float32)
        sx, tx = st.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y = s_op(sx)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        tdy = torch.tensor(dy)

        def s_fb():
            sx.grad = None
            s_op(sx).backward(dy)

        def t_fb():
            tx.grad = None
            t_op(tx).backward(tdy)

        return dict(group="op", name=name, shape="x".join(map(str, shape)), flops=None, s=s_fb, t=t_fb,
                    budget=1.0, target=target)

    for shape in [(128, 16, 32, 32), (128, 6, 28, 28)]:
        yield unary("max-pool 2x2 fwd+bwd", shape, lambda x: F.max_pool2d(x, 2), lambda x: tF.max_pool2d(x, 2), 1.5)
        yield unary("avg-pool 2x2 fwd+bwd", shape, lambda x: F.avg_pool2d(x, 2), lambda x: tF.avg_pool2d(x, 2))
    for shape in [(128, 16, 32, 32), (128, 64, 8, 8)]:
        c = shape[1]
        s_bn, t_bn = st.nn.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
        yield unary("batch norm (train) fwd+bwd", shape, s_bn, t_bn)
    yield unary("relu fwd+bwd", (128, 16, 32, 32), F.relu, torch.relu)
    for n, k in [(128, 10), (256, 1000)]:
        labels = rng.integers(0, k, n)
        sl, tl = st.Tensor(labels), torch.tensor(labels)
        yield unary("cross-entropy fwd+bwd", (n, k), lambda x, sl=sl: F.cross_entropy(x, sl),
                    lambda x, tl=tl: tF.cross_entropy(x, tl))


STEP_TARGETS = {"lenet5": 1.5, "resnet20": 1.5, "densenet_bc40": 2.0}


def _forward_flops(torch, model, x):
    """2 * multiply-adds of every Conv2d and Linear in one forward pass (hooks on the twin)."""
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def build_pair(name, np, torch, st):
    """(striate model, torch twin with the same weights, input array, labels) or raise."""
    import torch_models

    from striate.models import get_model

    s_model = get_model(name)
    t_model = torch_models.TWINS[name]()
    sd = s_model.state_dict()
    t_model.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in sd.items()})
    n_s = sum(int(p.data.size) for p in s_model.parameters())
    n_t = sum(p.numel() for p in t_model.parameters())
    if n_s != n_t:
        raise RuntimeError(f"{name}: striate has {n_s} parameters, the torch twin {n_t}")
    shape = torch_models.INPUTS[name]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, 10, shape[0])
    return s_model, t_model, x, y


def make_steps(name, np, torch, st, s_model, t_model, x, y):
    F = st.functional
    s_opt = st.optim.SGD(s_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    t_opt = torch.optim.SGD(t_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sx, sy = st.Tensor(x), st.Tensor(y)
    tx, ty = torch.tensor(x), torch.tensor(y)

    def s_step(xb=sx, yb=sy):
        s_opt.zero_grad()
        loss = F.cross_entropy(s_model(xb), yb)
        loss.backward()
        s_opt.step()

    def t_step(xb=tx, yb=ty):
        t_opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(t_model(xb), yb)
        loss.backward()
        t_opt.step()

    return s_step, t_step


def step_items(ctx, with_memory=True):
    np, torch, st = ctx["np"], ctx["torch"], ctx["striate"]
    for name in ("lenet5", "resnet20", "densenet_bc40"):
        try:
            s_model, t_model, x, y = build_pair(name, np, torch, st)
        except Exception as exc:  # the model is not in striate (yet), or differs from the twin
            yield dict(group="step", name=f"{name} training step", skipped=f"{type(exc).__name__}: {exc}")
            continue
        flops = 3 * _forward_flops(torch, t_model, torch.tensor(x))
        s_step, t_step = make_steps(name, np, torch, st, s_model, t_model, x, y)
        item = dict(group="step", name=f"{name} training step", shape="batch " + "x".join(map(str, x.shape)),
                    flops=flops, s=s_step, t=t_step, budget=6.0 if name != "lenet5" else 2.0,
                    target=STEP_TARGETS[name], model=name)
        yield item


# ----------------------------------------------------------------------------------- memory
def _status():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def memory_worker(framework, name, mode):
    """Runs in a subprocess: peak memory of one training step of ``name`` in ``framework``."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    import striate as st
    from striate.kernels import parallel

    parallel.set_num_threads(THREADS)
    s_model, t_model, x, y = build_pair(name, np, torch, st)
    s_step, t_step = make_steps(name, np, torch, st, s_model, t_model, x, y)
    if framework == "torch":
        del s_model
        step, small = t_step, (torch.tensor(x[:2]), torch.tensor(y[:2]))
    else:
        del t_model
        step, small = s_step, (st.Tensor(x[:2]), st.Tensor(y[:2]))
    step(*small)  # lazy initialisation (thread pools, JIT kernels, optimizer state)
    gc.collect()
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        peak = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
        return {"peak_bytes": peak}
    base = _status()["VmRSS"]
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    step()
    return {"peak_bytes": _status()["VmHWM"] - base, "rss_before": base}


def measure_memory(framework, name, mode="rss"):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", framework, name, mode]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "memory worker failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- report
def _fmt_ms(s):
    return f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}"


def _fmt_mib(b):
    return f"{b / 2 ** 20:.0f}"


def render_markdown(meta, rows):
    lines = []
    lines.append(f"Machine: {meta['cpu']}, {meta['cores']} cores; {meta['threads']} thread(s) for both frameworks, "
                 f"{meta['clock']}. "
                 f"SGEMM peak (NumPy/OpenBLAS {meta['blas_arch']}, 2048^3): {meta['sgemm_2t']:.0f} GFLOP/s on "
                 f"2 threads, {meta['sgemm_1t']:.0f} on 1.")
    lines.append(f"NumPy {meta['numpy']}, PyTorch {meta['torch']}, Python {meta['python']}; "
                 f"load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after; "
                 f"{meta['date']}.")
    busy = meta["load_before"][0] > 0.5 * (meta["cores"] or 1)  # "after" includes this run's own load
    if busy and meta["clock"] == "wall time":
        lines.append("")
        lines.append(f"**Warning: the machine was busy (load average above {0.5 * (meta['cores'] or 1):.1f} before the "
                     "run).** Other "
                     "processes took cores from both frameworks; PyTorch's OpenMP teams wait at every barrier for "
                     "a descheduled thread, so its times (and the ratios) are unreliable.  Rerun on a quiet machine.")
    lines.append("")
    lines.append("| item | shape | striate ms | PyTorch ms | ratio | target | striate GFLOP/s | % peak |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['name']} | - | skipped | | | | | |")
            continue
        gf = r.get("gflops")
        peak = "" if gf is None else f"{100 * gf / meta['peak']:.0f}%"
        target = r.get("target")
        ok = "" if target is None else (" ✓" if r["ratio"] <= target else " ✗")
        lines.append(
            f"| {r['name']} | {r['shape']} | {_fmt_ms(r['striate_s'])} | {_fmt_ms(r['torch_s'])} | "
            f"{r['ratio']:.2f}{ok} | {'' if target is None else f'≤ {target}'} | "
            f"{'' if gf is None else f'{gf:.0f}'} | {peak} |"
        )
    mem = [r for r in rows if r.get("memory")]
    if mem:
        lines.append("")
        lines.append("Peak memory of one training step (MiB above the memory held before it; RSS in a fresh process):")
        lines.append("")
        lines.append("| model | striate RSS | PyTorch RSS | ratio | target | striate tracemalloc |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in mem:
            m = r["memory"]
            if "error" in m:
                lines.append(f"| {r['model']} | {m['error']} | | | | |")
                continue
            ratio = m["striate_rss"] / m["torch_rss"]
            target = "≤ 1.5" if r["model"] == "resnet20" else ""
            ok = (" ✓" if ratio <= 1.5 else " ✗") if target else ""
            lines.append(f"| {r['model']} | {_fmt_mib(m['striate_rss'])} | {_fmt_mib(m['torch_rss'])} | "
                         f"{ratio:.2f}{ok} | {target} | {_fmt_mib(m['striate_tracemalloc'])} |")
    return "\n".join(lines) + "\n"


def readme_section(meta, table_md, command):
    return (
        "## Performance\n\n"
        "The kernels are plain NumPy and still use the whole CPU.  A convolution builds its column matrix "
        "a few images at a time into reused, cache-sized work buffers and hands those chunks to a small "
        "thread pool, with the BLAS library held to one thread inside each chunk; per shape it picks the "
        "layout of the columns (channel-major with the images innermost for stride-1 layers up to 32 "
        "outputs wide, so that the whole column matrix is one strided copy in long runs; channel-major "
        "over the zero-padded grid for wider maps, so that every kernel tap is one contiguous copy; "
        "channels-last for strided layers with 64 channels or more; channel-major otherwise; or a plain "
        "GEMM per image for 1x1 kernels) and the dX algorithm (the lecture's full convolution with flipped "
        "filters for stride-1 kernels up to 3x3, the sum of kernel-offset slices -- col2im -- otherwise).  "
        "For the stride-1 layers with the images innermost, one column matrix serves dX and dW alike: the "
        "columns of the padded dZ that the flipped-filter dX multiplies also give dW as the input times "
        "their transpose, so the backward builds one column matrix per chunk instead of two.  "
        "Nothing of the size of the column matrix is kept between forward and backward.  Batch norm, ReLU "
        "and max-pooling run their passes over chunks on every core too; max-pooling windows that tile "
        "the input (2x2, stride 2) are read from strided views of the input with a uint8 argmax, and "
        "written back the same way.  Matrix products outside the chunks (linear layers, `@`) run on "
        "one BLAS thread as well, large ones split over the pool, so that OpenBLAS's own workers -- which "
        "busy-wait for about a tenth of a second after every product they share -- never take a core "
        "from the chunks.  The work buffers are "
        "capped by a memory budget whatever the batch size (`STRIATE_WORKSPACE_MB`, default 256 MiB), and "
        "kernel outputs of 256 KiB and more (and the gradient sums of the autograd engine) reuse the memory "
        "of earlier outputs nothing refers to any more, a caching allocator, so that a step does not fault "
        "fresh pages in (`STRIATE_OUTPUT_POOL_MB`, default 1024 MiB, 0 turns it off; "
        "`striate.kernels.workspace.clear()` lets it go).  Weight-gradient products inside the chunks go "
        "through `np.dot`: `np.matmul` keeps the GIL for a result of 500 elements or fewer and would "
        "stall the other thread.  The Python a chunk runs between NumPy calls holds the GIL the other "
        "thread's chunk waits for, so it is kept short: work buffers are views made with one "
        "`np.ndarray` call over memory held per thread, and each zero-padded grid has a buffer of its "
        "own whose border is zeroed once, not at every chunk.  "
        "`STRIATE_NUM_THREADS` sets the thread count (default: the BLAS library's, so "
        "`OPENBLAS_NUM_THREADS=1` makes striate single-threaded as well).\n\n"
        f"Measured with `{command}`: striate and PyTorch side by side in one process, {meta['threads']} threads "
        "each, warm-up, alternating blocks of repeated runs, medians; ratio = striate / PyTorch (below 1: "
        "striate is faster); GFLOP/s counts the convolutions' and linear layers' multiply-adds, % peak "
        "divides by the SGEMM rate measured in the same run.  Peak memory is measured in a fresh process "
        "per framework (see `bench/run.py`).\n\n"
        + table_md
    )


# ----------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing budgets")
    ap.add_argument("--only", default=None, help="regular expression on item names")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--cpu", action="store_true",
                    help="one thread each and CPU time of the calling thread instead of wall time: a "
                         "comparison of the work done that a loaded machine disturbs far less "
                         "(writes latest_cpu.md/.json)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output folder")
    ap.add_argument("--memory-worker", nargs=3, metavar=("FRAMEWORK", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker)))
        return 0

    global CLOCK, THREADS
    if args.cpu:
        CLOCK, THREADS = time.thread_time, 1
    load_before = _loadavg()
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    import striate
    from striate import functional as F
    from striate.kernels import parallel

    parallel.set_num_threads(THREADS)
    if args.cpu:
        parallel.blas_threads(1).__enter__()  # held for the whole run
    blas = parallel.blas_info()
    meta = {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": THREADS,
        "clock": "CPU time of the calling thread (--cpu)" if args.cpu else "wall time",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "blas": blas,
        "blas_arch": blas[0]["architecture"] if blas else "?",
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS", "STRIATE_NUM_THREADS", "STRIATE_WORKSPACE_MB")},
        "load_before": load_before,
    }
    meta["sgemm_1t"] = _sgemm_peak(np, 1)
    meta["sgemm_2t"] = _sgemm_peak(np, 2)
    meta["peak"] = meta["sgemm_1t"] if THREADS == 1 else meta["sgemm_2t"]
    print(f"# {meta['cpu']}; OpenBLAS kernel {meta['blas_arch']}; SGEMM {meta['sgemm_2t']:.0f} GFLOP/s (2 threads), "
          f"{meta['sgemm_1t']:.0f} (1); load {load_before}", flush=True)
    ctx = {"np": np, "torch": torch, "striate": striate, "F": F}
    scale = 0.3 if args.quick else 1.0
    rows = []
    pattern = re.compile(args.only, re.I) if args.only else None
    for gen in (conv_items(ctx), op_items(ctx), step_items(ctx)):
        for item in gen:
            if pattern and not pattern.search(item["name"]):
                continue
            if item.get("skipped"):
                print(f"{item['name']:40s} skipped: {item['skipped']}", flush=True)
                rows.append({k: item[k] for k in ("group", "name", "skipped")})
                continue
            gc.collect()
            s_med, t_med, ns, nt, mins = compare(item["s"], item["t"], item["budget"] * scale)
            row = {k: item.get(k) for k in ("group", "name", "shape", "flops", "target", "model")}
            row.update(striate_s=s_med, torch_s=t_med, ratio=s_med / t_med, runs=[ns, nt],
                       striate_min_s=mins[0], torch_min_s=mins[1])
            row["gflops"] = None if not item.get("flops") else item["flops"] / s_med / 1e9
            row["torch_gflops"] = None if not item.get("flops") else item["flops"] / t_med / 1e9
            print(f"{row['name']:40s} striate {s_med * 1e3:9.2f} ms  torch {t_med * 1e3:9.2f} ms  "
                  f"ratio {row['ratio']:5.2f}", flush=True)
            if item["group"] == "step" and not (args.no_memory or args.cpu):
                mem = {}
                try:
                    mem["striate_rss"] = measure_memory("striate", item["model"])["peak_bytes"]
                    mem["torch_rss"] = measure_memory("torch", item["model"])["peak_bytes"]
                    mem["striate_tracemalloc"] = measure_memory("striate", item["model"], "tracemalloc")["peak_bytes"]
                    print(f"{'':40s} peak memory striate {mem['striate_rss'] / 2 ** 20:.0f} MiB, torch "
                          f"{mem['torch_rss'] / 2 ** 20:.0f} MiB (tracemalloc {mem['striate_tracemalloc'] / 2 ** 20:.0f})",
                          flush=True)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    mem = {"error": f"{type(exc).__name__}: {exc}"}
                row["memory"] = mem
            rows.append(row)
    meta["load_after"] = _loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = render_markdown(meta, rows)
    command = "bench/run.sh" + (" --quick" if args.quick else "") + (" --cpu" if args.cpu else "")
    stem = "latest_cpu" if args.cpu else "latest"
    title = "# striate vs PyTorch" + (" (1 thread each, CPU time)" if args.cpu else "")
    (out / f"{stem}.md").write_text(f"{title}\n\nCommand: `{command}`\n\n" + table)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    if not pattern and not args.cpu:
        (out / "README_section.md").write_text(readme_section(meta, table, command))
    print(f"\nwrote {out / (stem + '.md')} and {out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
