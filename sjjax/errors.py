"""Exception types shared across modules.

Every error a user can fix (a config key, a data file, a model file, a run directory)
derives from `SjjaxError`: `python -m sjjax.main` prints its message as one line and
exits with code 2 (`SJJAX_DEBUG=1` shows the traceback). Anything else is a bug and
keeps its traceback.
"""


class SjjaxError(Exception):
    """A problem with the user's input; the message names the file/line or config key
    and what to do."""


class ConfigError(SjjaxError, ValueError):
    """An invalid config value; the message names the key (config.a.b)."""


class DataError(SjjaxError, ValueError):
    """Bad input data; the message names the file and line (or record)."""


class ModelFileError(SjjaxError, ValueError):
    """A model file or directory is truncated, corrupt or unreadable; the message names
    the file and what is wrong."""


class InputNotFoundError(SjjaxError, FileNotFoundError):
    """A file or directory the user named does not exist; the message names it (and the
    config key that points at it, where known)."""


class RunDirError(ConfigError):
    """`config.run_dir` cannot be used as it is: not writable, holding a run of another
    model or data, or a phase's output that is not there yet."""
