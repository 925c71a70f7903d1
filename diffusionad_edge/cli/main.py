"""The ``dae`` command: a thin Typer layer over the library.

User mistakes (:class:`~diffusionad_edge.errors.DaeError`) become one line on stderr and a
non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import warnings


def _stop_during_startup(signum: int, frame: object) -> None:
    # Ctrl-C while the imports below run: nothing has been done, so stop at once with one line. A
    # KeyboardInterrupt raised inside an import can leave a module lock held and hang the process.
    os.write(2, b"interrupted; nothing written\n")
    os._exit(128 + signum)  # 130 for Ctrl-C, 143 for SIGTERM (forwarded here, see interrupts.forward_sigterm)


_MAIN_THREAD = threading.current_thread() is threading.main_thread()
_GUARD_STARTUP = _MAIN_THREAD and signal.getsignal(signal.SIGINT) is signal.default_int_handler
# SIGTERM is handled whatever SIGINT's disposition: a job started in the background by a shell script
# (`dae run ... &`, nohup) inherits an ignored SIGINT, and `kill PID` must still stop it cleanly. Only a
# SIGTERM the parent chose to ignore stays ignored.
_GUARD_SIGTERM = _MAIN_THREAD and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
if _GUARD_STARTUP:
    signal.signal(signal.SIGINT, _stop_during_startup)
if _GUARD_SIGTERM:
    signal.signal(signal.SIGTERM, _stop_during_startup)

import typer  # noqa: E402

from ..errors import DaeError, MissingDependencyError  # noqa: E402
from ..interrupts import Interrupted, exit_code, forward_sigterm, signal_label  # noqa: E402
from ..optional import TRAINING_MODULES, missing_training_module, training_extra_message  # noqa: E402
from . import bench_cmd, data_cmd, demo_cmd, eval_cmd, export_cmd, info_cmd, predict_cmd, run_cmd, serve_cmd, train_cmd  # noqa: E402
from .examples import epilog  # noqa: E402


def _hide_flag_types() -> None:
    """Typer (0.2x) writes a ``<bool>`` type after every on/off flag in --help (``--help <bool>``): a
    placeholder for a value a flag never takes. Show nothing there instead (a no-op on a Typer without
    this hook)."""
    option = getattr(typer.core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "_dae_patched", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._dae_patched = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


def _plain_usage_arguments() -> None:
    """Typer (0.2x) writes a required argument in braces on the usage line (``dae eval [OPTIONS]
    {CHECKPOINT}``), which reads like a choice. Write it the usual way instead: ``CHECKPOINT`` when
    required, ``[CHECKPOINT]`` when optional (a no-op on a Typer without this hook)."""
    argument = getattr(typer.core, "TyperArgument", None)
    original = getattr(argument, "_usage_display_name", None)
    if original is None or getattr(original, "_dae_patched", False):
        return

    def _usage_display_name(self):  # type: ignore[no-untyped-def]
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    _usage_display_name._dae_patched = True  # type: ignore[attr-defined]
    argument._usage_display_name = _usage_display_name


_hide_flag_types()
_plain_usage_arguments()

app = typer.Typer(
    name="dae",
    help="DiffusionAD for the edge: train, evaluate, export, run and benchmark anomaly detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _workstation_verb(verb: str, command):
    """``command`` as it is, except that on a device install (no [train] extra) it stops with one line
    before doing anything. The command modules import no heavy package, so ``dae --help`` lists every
    verb on both installs."""

    @functools.wraps(command)
    def checked(*args, **kwargs):
        missing = missing_training_module()
        if missing is not None:
            raise MissingDependencyError(training_extra_message(f"dae {verb}", missing))
        return command(*args, **kwargs)

    return checked


# Verbs that always need PyTorch are checked up front; export (--build-engine runs on a device) and
# bench (bundle rows run on a device) meet a missing workstation package only on the paths that
# need it, and main() turns that into the same line.
app.command("train", epilog=epilog("train"))(_workstation_verb("train", train_cmd.train))
app.command("eval", epilog=epilog("eval"))(_workstation_verb("eval", eval_cmd.evaluate_cmd))
app.command("info", epilog=epilog("info"))(_workstation_verb("info", info_cmd.info))
app.command("export", epilog=epilog("export"))(export_cmd.export)
app.command("targets", epilog=epilog("targets"))(export_cmd.targets)
app.command("run", epilog=epilog("run"))(run_cmd.run)
app.command("serve", epilog=epilog("serve"))(serve_cmd.serve)
app.command("predict", epilog=epilog("predict"))(predict_cmd.predict)
app.command("bench", epilog=epilog("bench"))(bench_cmd.bench)
app.command("demo", epilog=epilog("demo"))(_workstation_verb("demo", demo_cmd.demo))
app.add_typer(data_cmd.app, name="data")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    # Library warnings (ours and our dependencies') as one line each, not source excerpts.
    warnings.formatwarning = _one_line_warning
    # From here on Ctrl-C is Python's KeyboardInterrupt again (train stops at a step boundary, run
    # finalises its video), except for export, whose own guard takes over from the startup handler.
    if _GUARD_STARTUP and sys.argv[1:2] != ["export"]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _GUARD_SIGTERM:
        # SIGTERM (systemctl stop, docker stop, Kubernetes, kill) stops every verb as Ctrl-C does, exit code 143.
        forward_sigterm()
    try:
        _run_app()
    finally:
        if _GUARD_SIGTERM:
            # The command has ended (its line is printed, its exit code chosen): a SIGTERM now, e.g. from
            # torchrun stopping a rank that is already exiting, ends the process as before, without a
            # KeyboardInterrupt raised into the interpreter's shutdown.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_app() -> None:
    try:
        app()
    except Interrupted as exc:  # Ctrl-C: what was kept, not an error
        print(str(exc), file=sys.stderr)
        sys.exit(exit_code())
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt (Ctrl-C, or SIGTERM forwarded, outside any job that handles
        # it itself) into a silent exit 130: say it in one line, and exit 143 for SIGTERM.
        if exc.code == 130 and _caused_by_keyboard_interrupt(exc):
            print(f"interrupted ({signal_label()})", file=sys.stderr)
            sys.exit(exit_code())
        raise
    except DaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # a job stopped by a signal (dae train's TrainingInterrupted): 130 for Ctrl-C, 143 for SIGTERM
        sys.exit(exit_code() if exc.exit_code == 130 else exc.exit_code)
    except ModuleNotFoundError as exc:  # a workstation package on a device install: one line, exit 2
        missing = (exc.name or "").split(".")[0]
        if missing not in TRAINING_MODULES:
            raise
        missing = missing_training_module() or missing  # name torch first when it is the one missing
        verb = " ".join(["dae", *sys.argv[1:2]]) if sys.argv[1:2] and not sys.argv[1].startswith("-") else "dae"
        print(f"error: {training_extra_message(verb, missing)}", file=sys.stderr)
        sys.exit(MissingDependencyError.exit_code)


def _caused_by_keyboard_interrupt(exc: BaseException) -> bool:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


if __name__ == "__main__":
    main()
