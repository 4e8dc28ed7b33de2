"""Exception types shared across modules."""


class ConfigError(ValueError):
    """An invalid config value; the message names the key (config.a.b)."""


class DataError(ValueError):
    """Bad input data; the message names the file and line (or record)."""
