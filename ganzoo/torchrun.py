"""``python -m ganzoo.torchrun ARGS``: torch's own launcher (``torch.distributed.run``, the
code behind ``torchrun``), as ``ganzoo train --nproc N`` starts it, without its failure
report. Each rank has already said why it stopped in one line; the launcher's
ChildFailedError traceback (some 45 lines) would bury that line. The exit code is the
lowest failed rank's (128 + N for a rank ended by signal N), where torchrun's is 1; SIGUSR1 is
handled and forwarded to the ranks like SIGTERM (torchrun's default list leaves it out, and
it ended torchrun, the ranks training on)."""
from __future__ import annotations

import sys


def exit_code(failures: dict) -> int:
    """The exit code of the lowest failed rank (``{rank: ProcessFailure}``) that exited on its
    own, else of the lowest, shell style; a rank ended by a signal (the kernel's out-of-memory
    kill, say) left no line, so one is said here."""
    if not failures:
        return 1
    # a rank that exited on its own said why; one ended by a signal beside it was most likely
    # stopped by the launcher after that exit (SIGTERM to the rest, mid-cleanup): the first speaks
    own = [r for r, f in failures.items() if f.exitcode >= 0]
    rank = min(own or failures)
    code = failures[rank].exitcode
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        print(f"error: rank {rank} was ended by {name} (out of memory, if SIGKILL and nobody sent it)",
              file=sys.stderr, flush=True)
        return 128 - code
    return code or 1


def main(argv: list[str] | None = None) -> int:
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # the launcher's own log lines (closing signals sent, "failed (exitcode: 1)") repeat what
    # the ranks and exit_code say
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # torch gives each module's its own level
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if hasattr(args, "signals_to_handle"):  # torch >= 2.6: SIGUSR1 (a scheduler's "stop soon")
        args.signals_to_handle = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"  # too, not torchrun's death
    try:
        run(args)
    except ChildFailedError as exc:
        return exit_code(exc.failures)
    except SignalException as exc:  # stopped by a signal: the ranks had it too, and said where they stopped
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
