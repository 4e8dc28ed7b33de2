"""Entry point: `python -m sjjax.main --config=configs/<phase>.py [--config.key=value ...]`.

Thin on purpose: parse the config, validate it (before anything compiles), pick the
phase named by `config.phase`, run it.

Every error the user can fix (a config key, a data file and line, a model file, a run
directory: `sjjax.errors.SjjaxError`, and the command line itself) is printed as one line,
`sjjax: error: <what, where, what to do>`, with exit code 2; `SJJAX_DEBUG=1` shows the
traceback instead. A run stopped by SIGTERM/SIGINT prints where it saved and exits 0.
Anything else is a bug and keeps its traceback (docs/reliability.md).
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from sjjax.phases import run_phase

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file (configs/*.py[:preset]).",
    lock_config=True)

EXIT_USER_ERROR = 2
# OSErrors that are the user's to fix (a path they chose), printed as one line.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG}


def _debug() -> bool:
    return os.environ.get("SJJAX_DEBUG") == "1"


def _fail(message: str):
    """One line on stderr, exit code 2."""
    line = " ".join(str(message).split())  # never more than one line
    print(f"sjjax: error: {line}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def _setup_logging():
    """Our progress at INFO; libraries' INFO chatter (Orbax, XLA) off unless asked."""
    import logging

    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    # TFDS warns on every custom BuilderConfig, i.e. on every data set sjjax prepares.
    logging.getLogger("absl").addFilter(
        lambda record: not str(record.msg).startswith("Using custom data configuration"))
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("sjjax")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def _maybe_initialize_distributed():
    """Multi-process runs join one JAX runtime before anything touches a device:
    SJJAX_DISTRIBUTED=1 on TPU pod slices (tpu_scripts/launch.sh sets it; the coordinator
    is discovered automatically), or SJJAX_COORDINATOR_ADDRESS / SJJAX_NUM_PROCESSES /
    SJJAX_PROCESS_ID anywhere (`python -m sjjax.launch_local`): see sjjax.distributed."""
    from sjjax import distributed
    distributed.initialize_from_env()


# --------------------------------------------------------------------------
# The command line: absl + ml_collections errors as one line
# --------------------------------------------------------------------------

def _override_args(argv) -> list[tuple[str, str]]:
    """(the argument as given, the dotted key) of each --config.<key> override."""
    out = []
    for arg in argv[1:]:
        name = arg.lstrip("-").split("=", 1)[0]
        if not arg.startswith("-"):
            continue
        if name.startswith("noconfig."):
            name = name[2:]
        if name.startswith("config."):
            out.append((arg.split("=", 1)[0], name[len("config."):]))
    return out


def _config_path(argv) -> str | None:
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith(("--config=", "-config=")):
            return arg.split("=", 1)[1]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _missing_key(config, key: str) -> str | None:
    """Why config has no field `key` ("config.train has no field 'x' (did you mean
    'y'?)"), or None when it has one."""
    node, seen = config, "config"
    for part in key.split("."):
        name = re.sub(r"\[\d+\]$", "", part)
        fields = list(node.keys()) if hasattr(node, "keys") else None
        if fields is None or name not in fields:
            if fields is None:
                return f"{seen} is a value ({type(node).__name__}), not a section with fields"
            close = difflib.get_close_matches(name, [str(f) for f in fields], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{seen} has no field {name!r}{hint}"
        node, seen = node[name], f"{seen}.{name}"
        if name != part:  # an indexed element: do not look further
            return None
    return None


def _override_error(argv) -> str | None:
    """The line for an override ml_collections could not apply (a misspelt key), or None
    when every override names a field (the error is then not the command line's)."""
    path = _config_path(argv)
    if path:
        try:
            from ml_collections.config_flags.config_flags import ConfigFileFlagParser
            config = ConfigFileFlagParser("config").parse(path)
        except Exception:  # the config file itself fails: reported by that error
            config = None
        if config is not None:
            for given, key in _override_args(argv):
                why = _missing_key(config, key)
                if why:
                    return (f"{given}: {why}; the fields and their defaults are in "
                            f"sjjax/config.py")
    return None


def _flag_error(error: Exception) -> str:
    """absl's message for a flag that failed, cut to one line: for a config file whose
    get_config raised, the flag and that exception's own message."""
    text = str(error).strip()
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if "Error whilst parsing config file" in text and len(lines) > 1:
        flag = lines[0].split(": Error whilst parsing config file")[0]
        flag = re.sub(r"^flag ", "", flag)
        last = re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
        return f"{flag}: {last}"
    return lines[0] if lines else type(error).__name__


def parse_flags(argv):
    """absl's flag parsing, with every error in the command line (unknown preset, an
    error in the config file, a misspelt --config.<key>, an unknown flag) as one line."""
    try:
        args = flags.FLAGS(argv)
        if _CONFIG.value is not None:
            _CONFIG.value.get("phase")  # ml_collections defers a file it could not load
        return args
    except OSError as error:
        if _debug():
            raise
        reason = str(error).strip().splitlines()[-1].strip()
        _fail(f"--config={_config_path(argv)}: cannot load the config file ({reason}); "
              f"relative paths are relative to {os.getcwd()}; the configs are "
              f"configs/<phase>.py[:preset]")
    except flags.Error as error:
        if _debug():
            raise
        _fail(_flag_error(error))
    except (AttributeError, KeyError):  # ml_collections: no such field
        message = None if _debug() else _override_error(argv)
        if message is None:  # (or a bug in a config file: its traceback)
            raise
        _fail(message)


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

def check_writable(config) -> None:
    """The directories the phase will write, checked before anything is loaded: a run
    directory under a regular file or without write permission is one line, not a
    traceback minutes later."""
    from sjjax import fs
    from sjjax.errors import RunDirError
    from sjjax.phases import DATA_PHASES
    keys = ["run_dir"] + (["data.tfds_dir"] if config.get("phase") in DATA_PHASES else [])
    for key in keys:
        node = config
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        if not isinstance(node, str) or not node:
            continue
        why = fs.unwritable_reason(node)
        if why:
            raise RunDirError(f"config.{key}: {node!r} {why}; choose a directory this user "
                              f"can write (--config.{key}=...)")


def _quiet_libraries(config) -> None:
    """With config.log.progress off, TFDS's own progress bars (preparing a data set) are
    off too: they would otherwise share a terminal line with the error or summary."""
    from sjjax.phases import DATA_PHASES
    log_config = config.get("log")
    if log_config is not None and not log_config.get("progress", True) and \
            config.get("phase") in DATA_PHASES + ("pipeline",):
        import tensorflow_datasets as tfds
        tfds.disable_progress_bar()


def _main(argv):
    _setup_logging()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/<phase>.py is required")
    from sjjax.errors import SjjaxError
    from sjjax.train.trainer import NonFiniteLossError, Preempted
    try:
        _maybe_initialize_distributed()  # (its errors name the environment variable)
        config = _CONFIG.value
        check_writable(config)
        _quiet_libraries(config)
        run_phase(config)
    except Preempted as stopped:  # SIGTERM/SIGINT: a checkpoint of the last step is saved
        print(f"sjjax: {stopped}", file=sys.stderr, flush=True)
        sys.exit(0)
    except (SjjaxError, NonFiniteLossError) as error:
        if _debug():
            raise
        _fail(str(error))
    except Exception as error:
        from sjjax import distributed
        # A multi-process run whose peer died: a line naming it and exit 3 (or return).
        distributed.after_failed_collective(error)
        if not isinstance(error, OSError):
            raise
        # A path the user chose that cannot be written or read (permissions, a full
        # disk, a file where a directory should be); other OSErrors are bugs.
        if _debug() or error.errno not in _USER_ERRNOS or not error.filename:
            raise
        _fail(f"{error.filename}: {error.strerror}; check the paths in the config "
              f"(config.run_dir, config.data.*, config.model.source)")


def run_main():
    app.run(_main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()
