"""Command-line conventions shared by every entry point.

User mistakes end in one line on stderr and exit code 2 (no traceback): argparse errors through
:class:`ArgumentParser`, everything else by raising :class:`~common.config.UsageError` inside a
function wrapped by :func:`run_main`. Progress bars go to stderr and only to a terminal (:func:`progress`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from manifold_mixup.common.config import (
    C,
    UsageError,
    add_config_args,
    cli_overrides,
    field_defaults,
    resolve_config,
    to_dict,
    upgrade,
)
from manifold_mixup.common.lock import lock_run_dir, unlock_run_dir
from manifold_mixup.common.outputs import disk_full_message, is_disk_full
from manifold_mixup.common.replaced import pending_runs, restore_replaced
from manifold_mixup.common.run import Run
from manifold_mixup.common.rundir import prepare_run_dir
from manifold_mixup.common.tensorboard import require_tensorboard

# the console command being run (``manifold-mixup ssl-train``), set by manifold_mixup.cli: usage lines and
# errors name it instead of the ``python -m ...`` form the modules give
COMMAND: str | None = None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``prog: error: what is wrong (see --help)``; an unknown option
    is named together with the closest valid ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --lr must never silently mean --lr-decay
        if COMMAND and str(kwargs.get("prog", "")).startswith("python -m "):
            kwargs["prog"] = COMMAND
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            unknown = next((a for a in extra if a.startswith("-")), extra[0])
            if not unknown.startswith("-"):
                self.error(f"unexpected argument {unknown!r}")
            name = unknown.split("=")[0]
            options = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
            close = difflib.get_close_matches(name, options, n=3, cutoff=0.75)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            self.error(f"unknown option {name} ({hint}valid: {', '.join(options)})")
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_run_args(parser: argparse.ArgumentParser, default_config: str | None) -> None:
    """The flags every trainer has: --config, --out, --resume, --overwrite, --device, --tensorboard."""
    g = parser.add_argument_group("run")
    g.add_argument(
        "--config",
        default=default_config,
        metavar="FILE",
        help=f"YAML file of config fields; flags below override it (default: {default_config})",
    )
    g.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/<name>-<date>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (kept until the new run writes its first checkpoint)",
    )
    g.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda[:N] or mps (default: auto)")
    g.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write the logged numbers (and GAN samples) as TensorBoard events to OUT/tensorboard/ "
        '(needs pip install -e ".[tensorboard]")',
    )


def start_run(
    cls: type[C],
    args: argparse.Namespace,
    name: str,
    *,
    rank: int = 0,
    world: int = 1,
    barrier: Callable = lambda: None,
) -> tuple[C, Run, bool]:
    """Resolve the config (saved run <- YAML <- flags) and open the run directory.

    Returns (config, run, resuming). Nothing in ``--out`` is written here: the trainer calls
    ``run.begin()`` once its setup has worked. Rank 0 locks an existing ``--out`` at once, so a second
    run on it is refused before any work; a resume with another trainer or another number of
    processes than the run had is refused too.
    Under torchrun every rank checks ``--out`` before rank 0, the only writer, creates anything in
    it: ``barrier`` (all ranks meet) sits in between.
    """
    if getattr(args, "tensorboard", False):
        require_tensorboard()
    if args.out is None:
        if args.resume:
            raise UsageError("--resume needs --out DIR, the run to continue")
        if world > 1:
            raise UsageError("under torchrun pass --out DIR (every process must name the same run directory)")
        args.out = str(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    # rank 0 locks an existing --out before reading it; the Run takes the lock over (released with it)
    lock = lock_run_dir(args.out) if rank == 0 and Path(args.out).is_dir() else None
    try:
        saved = prepare_run_dir(
            args.out, resume=args.resume, overwrite=args.overwrite, kind=name, world=world, lock=rank == 0
        )
        # On resume the saved config is the base, so only flags that change something count as a diff;
        # the default --config file is not re-applied over it.
        yaml_path = args.config if (saved is None or args.config != args._default_config) else None
        cfg = resolve_config(cls, yaml_path, cli_overrides(args), base=saved)
        barrier()
        run = Run(
            args.out,
            to_dict(cfg),
            resume=args.resume,
            overwrite=args.overwrite,
            writer=rank == 0,
            kind=name,
            world=world,
            lock=lock,
            tensorboard=getattr(args, "tensorboard", False),
            # a field added since the run was saved compares as its default, the value the run had
            saved_as_now=lambda saved: field_defaults(cls) | upgrade(cls, saved, "", note=False),
        )
    except BaseException:
        if lock is not None:
            unlock_run_dir(lock)
        raise
    return cfg, run, args.resume


def trainer_parser(cls: type, prog: str, description: str, default_config: str | None) -> ArgumentParser:
    """Parser with the run flags and one ``--field-name`` per config field."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser, default_config)
    add_config_args(parser, cls)
    parser.set_defaults(_default_config=default_config)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_main(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None, prog: str = "") -> None:
    """Call ``main(argv)``; a UsageError becomes ``prog: error: message`` and exit code 2.

    Whatever ends ``main`` early (a UsageError, an exception, Ctrl-C, SIGTERM before the training
    loop takes over the signals) puts back an old run that ``--overwrite`` moved aside, unless the new
    run already wrote a checkpoint.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except ValueError:  # not the main thread
        previous = None
    before = pending_runs()  # only runs started by this call are put back
    name = COMMAND or prog or Path(sys.argv[0]).name
    try:
        code = main(argv)
    except UsageError as e:
        note = restore_replaced(keep=before)
        print(f"{name}: error: {e}" + (f" ({note})" if note else ""), file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as a shell tool does
        restore_replaced(keep=before)
        with contextlib.suppress(OSError):  # no flush error at exit: stdout now goes nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as e:
        if not is_disk_full(e):
            note = restore_replaced(keep=before)
            if note:
                print(f"note: {note}", file=sys.stderr)
            raise
        note = restore_replaced(keep=before)
        message = disk_full_message(e.filename or Path.cwd())
        print(f"{name}: error: {message}" + (f" ({note})" if note else ""), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before the training loop took over the signals, or a second one
        note = restore_replaced(keep=before)
        print(f"{name}: interrupted" + (f" ({note})" if note else ""), file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except BaseException:
        note = restore_replaced(keep=before)
        if note:
            print(f"note: {note}", file=sys.stderr)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(code, int) and code:
        sys.exit(code)


def positive_int(text: str | None, flag: str, default: int | None) -> int | None:
    """``text`` as an integer >= 1 (``default`` when None); anything else is a UsageError naming ``flag``."""
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"{flag}: expected a positive integer, got {text!r}")
    return int(text)


def integer(text: str | int, flag: str) -> int:
    """``text`` as an integer of either sign (a seed); anything else is a UsageError naming ``flag``."""
    stripped = str(text).strip()
    if not stripped.lstrip("-").isdigit():
        raise UsageError(f"{flag}: expected an integer, got {text!r}")
    return int(stripped)


def output_path(text: str, suffix: str, flag: str = "--out") -> Path:
    """The output file a flag names, which must end in ``suffix`` (".png", ".json")."""
    path = Path(text)
    if path.suffix != suffix:
        raise UsageError(f"{flag} must name a {suffix} file, got {text!r}")
    return path


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as a user would retype it, for the protocol record of a result file."""
    return " ".join([prog, *(argv if argv is not None else sys.argv[1:])])


def write_json_beside(out: Path, result: Any) -> Path:
    """Write ``result`` as indented JSON to ``out`` with the suffix .json (the figure's record); its path."""
    path = out.with_suffix(".json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def progress(total: int, initial: int = 0, desc: str = "") -> tqdm:
    """A tqdm bar on stderr, silent when stderr is not a terminal (CI, log files)."""
    return tqdm(
        total=total, initial=initial, desc=desc, disable=not sys.stderr.isatty(), dynamic_ncols=True, leave=False
    )
