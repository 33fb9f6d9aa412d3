"""The GPU check: everything this package wants to know from a borrowed GPU, in one command (<= 8 minutes).

    python experiments/gpu_check.py --out gpu-check                 # on a CUDA machine (data/cifar10-jpeg75 there)
    python experiments/gpu_check.py --device cpu --tiny --out /tmp/g  # the same parts, tiny, in seconds (CI)

Parts, each timed and recorded even when another fails:

1. ``ssl-bench``, ``gan-bench``: both benches on the plain, amp and fast (compiled) paths (tiny: plain and amp);
2. ``ssl-run``: 2,000 updates of the CIFAR-10 4,000-label SSL recipe (WRN-28-2, compiled, bf16) with
   its throughput, dynamo's frame/graph/graph-break counts and peak memory (tiny: 10 digits updates);
3. ``gan-run``: 1,000 SNGAN iterations on CIFAR-10 (compiled, bf16, no scoring: the Inception weights are not
   there), the same numbers (tiny: 10 digits iterations);
4. ``ssl-fp16``: 200 updates with float16 autocast and a gradient scaler, when this version has
   ``--amp-dtype`` (else recorded as not available, never silently left out).

``--tiny`` compiles with dynamo's ``eager`` backend: graphs, recompiles and graph breaks are counted as on
the GPU, without inductor's minutes of code generation. Results: ``OUT/gpu_check.json`` and
``OUT/gpu_check.md``; exit 0 when every part ran or is marked not available in this version, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repository's packages (ssl/ too) first
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from manifold_mixup.common.config import UsageError  # noqa: E402


@dataclasses.dataclass
class Part:
    name: str
    status: str = "not run"  # ok, failed: ..., not available: ...
    seconds: float = 0.0
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)


def dynamo_counts() -> dict[str, int]:
    """Frames dynamo compiled (the first compile of a function and each recompile), unique graphs, graph
    breaks and recompile-limit hits since the last ``torch._dynamo.reset()``."""
    return {
        "frames": int(counters["frames"].get("total", 0)),
        "unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "recompile_limit_hits": sum(1 for k in counters["unimplemented"] if "recompile limit" in k.lower()),
    }


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated device memory (CUDA) or the process's peak resident set (CPU), MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def eager_backend(tiny: bool) -> Iterator[None]:
    """In tiny mode, ``torch.compile`` uses dynamo's ``eager`` backend (capture without code generation)."""
    if not tiny:
        yield
        return
    original = torch.compile
    with mock.patch.object(torch, "compile", functools.partial(original, backend="eager")):
        yield


def run_part(part: Part, device: torch.device, body: Callable[[], dict[str, Any]]) -> None:
    """Run one part: its numbers, wall time and status; an exception fails this part only."""
    torch._dynamo.reset()
    counters.clear()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        part.numbers = body()
        part.status = "ok"
    except UsageError as e:
        part.status = f"failed: {e}"
    except NotImplementedError as e:
        part.status = f"not available: {e}"
    except Exception as e:  # one part failing must not lose the others' numbers
        part.status = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        traceback.print_exc()
    part.seconds = time.perf_counter() - start
    part.numbers.setdefault("peak_mib", round(peak_memory_mib(device), 1))
    print(f"[gpu_check] {part.name}: {part.status} in {part.seconds:.1f} s", flush=True)


def bench(module: Any, argv: list[str]) -> dict[str, Any]:
    """A bench's printed table (its rows and ratio lines) as numbers for the JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main(argv)
    if code:
        raise RuntimeError(f"bench exited {code}")
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| ") and "ms/step" not in line]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {"ms": float(cells[1]), "img_per_s": float(cells[2])}
    notes = [line[2:] for line in out.getvalue().splitlines() if line.startswith("- ")]
    return {"rows": table, "notes": notes}


def training_run(main: Callable[[list[str]], int], argv: list[str], out: Path, rate_key: str) -> dict[str, Any]:
    """One trainer run in this process: its summary's throughput and wall time, and dynamo's counts."""
    code = main([*argv, "--out", str(out)])
    if code:
        raise RuntimeError(f"training exited {code}")
    summary = json.loads((out / "summary.json").read_text())
    rates = [
        m["time"][rate_key] for m in map(json.loads, (out / "metrics.jsonl").open()) if rate_key in m.get("time", {})
    ]
    return {
        "rate": rates[-1] if rates else None,
        "rate_unit": rate_key,
        "wall_s": summary.get("wall_time_s"),
        "speed": summary.get("speed"),
        **dynamo_counts(),
    }


def bench_argv(args: argparse.Namespace, device: torch.device) -> tuple[list[str], list[str]]:
    """The flags of manifold_mixup.ssl.bench and manifold_mixup.gan.bench."""
    dev = ["--device", str(device)]
    if not args.tiny:
        return [*dev, "--paths", "plain,amp,fast", "--warmup", "3", "--repeat", "20"], [
            *dev,
            "--paths",
            "plain,amp,fast",
            "--warmup",
            "3",
            "--repeat",
            "10",
        ]
    tiny = [*dev, "--paths", "plain,amp", "--warmup", "1", "--repeat", "2", "--batch-size", "8"]
    return [*tiny, "--depth", "10", "--width", "1", "--kinds", "ssl"], [
        *tiny,
        "--n-dis",
        "1",
        "--g-channels",
        "16",
        "--d-channels",
        "16",
    ]


def trainer_argv(args: argparse.Namespace, device: torch.device) -> tuple[list[str], list[str]]:
    """The flags of the compiled SSL run and GAN run (without --out)."""
    dev = ["--device", str(device)]
    if args.tiny:
        ssl_run = ["--config", str(ROOT / "configs/ssl/digits.yaml"), "--epochs", "1", "--iterations-per-epoch", "10"]
        ssl_run += ["--batch-size", "16", "--unlabelled-batch-size", "16", "--log-every", "5", "--amp", "true"]
        gan_run = ["--config", str(ROOT / "configs/gan/digits.yaml"), "--steps", "10", "--log-every", "5"]
        gan_run += ["--amp", "true"]
    else:
        data = ["--data-dir", args.data_dir]
        ssl_run = ["--config", str(ROOT / "configs/ssl/cifar10-4k.yaml"), *data, "--epochs", "1"]
        ssl_run += ["--iterations-per-epoch", "2000", "--log-every", "500"]
        gan_run = ["--config", str(ROOT / "configs/gan/sngan-cifar10.yaml"), *data, "--steps", "1000"]
        gan_run += ["--log-every", "250", "--sample-every", "1000", "--checkpoint-every", "1000"]
    ssl_run += [*dev, "--compile", "true", "--checkpoint-every", "1"]
    gan_run += [*dev, "--compile", "true", "--eval-samples", "0"]
    return ssl_run, gan_run


def plan(args: argparse.Namespace, device: torch.device) -> list[tuple[Part, Callable[[], dict[str, Any]]]]:
    """The parts in order, each with the function that runs it."""
    import manifold_mixup.gan.bench
    import manifold_mixup.gan.train
    import manifold_mixup.ssl.bench
    import manifold_mixup.ssl.train
    from manifold_mixup.ssl.config import SSLConfig

    ssl_bench, gan_bench = bench_argv(args, device)
    ssl_run, gan_run = trainer_argv(args, device)
    fp16_updates = "2" if args.tiny else "200"  # fp16 convolutions are slow on CPUs (no fp16 kernels)
    out = Path(args.out)

    def fp16() -> dict[str, Any]:
        if "amp_dtype" not in {f.name for f in dataclasses.fields(SSLConfig)}:
            raise NotImplementedError("this version has no --amp-dtype")
        argv = [*ssl_run, "--amp-dtype", "float16", "--compile", "false", "--iterations-per-epoch", fp16_updates]
        return training_run(manifold_mixup.ssl.train.main, argv, out / "ssl-fp16", "img_per_s")

    return [
        (Part("ssl-bench"), lambda: bench(manifold_mixup.ssl.bench, ssl_bench)),
        (Part("gan-bench"), lambda: bench(manifold_mixup.gan.bench, gan_bench)),
        (Part("ssl-run"), lambda: training_run(manifold_mixup.ssl.train.main, ssl_run, out / "ssl-run", "img_per_s")),
        (Part("gan-run"), lambda: training_run(manifold_mixup.gan.train.main, gan_run, out / "gan-run", "real_per_s")),
        (Part("ssl-fp16"), fp16),
    ]


def markdown(parts: Sequence[Part], header: str) -> str:
    lines = [header, "", "| part | status | s | throughput | frames | graphs | graph breaks | peak MiB |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for p in parts:
        n = p.numbers
        rate = f"{n['rate']:.0f} {n['rate_unit']}" if n.get("rate") else "—"
        counts = [str(n[k]) if k in n else "—" for k in ("frames", "unique_graphs", "graph_breaks")]
        lines.append(f"| {p.name} | {p.status} | {p.seconds:.1f} | {rate} | {' | '.join(counts)} | {n['peak_mib']} |")
    for p in parts:
        for note in p.numbers.get("notes", []):
            lines.append(f"- {p.name}: {note}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from manifold_mixup.common.cli import ArgumentParser
    from manifold_mixup.common.device import resolve_device

    parser = ArgumentParser(prog="python experiments/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the runs")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and dynamo's eager backend (CI on the CPU)")
    parser.add_argument("--data-dir", default="data/cifar10-jpeg75", help="CIFAR-10 for the full-size runs")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty; pass a new folder (nothing of an earlier check is replaced)")
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = f"# GPU check: {name}, torch {torch.__version__}{' (tiny)' if args.tiny else ''}"
    parts = []
    with eager_backend(args.tiny):
        for part, body in plan(args, device):
            run_part(part, device, body)
            parts.append(part)
            record = {"device": name, "torch": torch.__version__, "tiny": args.tiny}
            record["parts"] = [dataclasses.asdict(p) for p in parts]
            (out / "gpu_check.json").write_text(json.dumps(record, indent=1, default=str) + "\n")  # as parts land
    (out / "gpu_check.md").write_text(markdown(parts, header))
    print(markdown(parts, header))
    return 0 if all(p.status == "ok" or p.status.startswith("not available") for p in parts) else 1


if __name__ == "__main__":
    from manifold_mixup.common.cli import run_main

    run_main(main, prog="python experiments/gpu_check.py")
