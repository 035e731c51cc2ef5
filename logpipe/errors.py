"""Every error logpipe raises on purpose. The CLI prints them as one line, exit code 1."""


class LogpipeError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class ConfigError(LogpipeError):
    """A setting or flag has a value logpipe cannot use."""


class InputError(LogpipeError):
    """An input file cannot be found or read."""


class InfluxUnavailable(LogpipeError):
    """InfluxDB could not be reached, timed out, or answered 5xx/429: worth retrying."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InfluxRejected(LogpipeError):
    """InfluxDB understood the request and refused it (4xx, or an error in a query result)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class InfluxNotFound(LogpipeError):
    """No InfluxDB answers at the configured URL and none can be started here."""


class StatePathError(LogpipeError):
    """A file or directory of logpipe's own state cannot be used as it is: a symbolic link
    where a file is written (never followed), something else where a directory goes, or
    no permission."""


class CleanRefused(LogpipeError):
    """`logpipe clean` removed nothing: run-all's private InfluxDB still runs on its files,
    or nobody confirmed (no terminal to ask, no --yes)."""


class BadDates(LogpipeError):
    """Days asked for that are not dates, that InfluxDB cannot store, or a range out of order
    or longer than MAX_RANGE_DAYS (the API answers 422)."""


class NoRequests(LogpipeError):
    """No day of the range asked for has requests (the API answers 404)."""


class ApiFailed(LogpipeError):
    """The statistics API (`logpipe stats --api`) could not be reached or refused to answer."""
