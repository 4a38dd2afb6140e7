"""The error tree: user mistakes are PrepErrors and print as one line; anything else is a bug."""


class PrepError(Exception):
    """A problem the user can fix; the message names the key or file, the value and what is accepted."""


class ConfigError(PrepError):
    """A configuration value that cannot work."""


class InputError(PrepError):
    """An input file (label file, source folder, CSV) that cannot be read as configured."""


class EncodeError(PrepError):
    """One image that cannot be read or encoded; handled per image by `on_error`."""


class WriteError(PrepError):
    """An output that cannot be written."""
