"""logpipe: API request logs into per-customer daily statistics, via Bytewax and InfluxDB."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("logpipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
