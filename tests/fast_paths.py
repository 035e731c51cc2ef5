"""Both implementations of parse_text_chunk, for tests that hold each to parse_chunk."""

import os

import pytest

from logpipe.process.parse import (
    FAST_PATH_COMPILED,
    parse_text_chunk_c,
    parse_text_chunk_regex,
)

FAST_PATH_REQUIRED = (
    bool(os.environ.get("LOGPIPE_REQUIRE_FASTPARSE")) or os.environ.get("CI") == "true"
)
"""The nox session and CI must test the C path: there a missing extension fails its cases
(parse_text_chunk_c raises) instead of skipping them."""

FAST_PATHS = pytest.mark.parametrize(
    "fast_path",
    [
        pytest.param(parse_text_chunk_regex, id="regex"),
        pytest.param(
            parse_text_chunk_c,
            id="c",
            marks=pytest.mark.skipif(
                not FAST_PATH_COMPILED and not FAST_PATH_REQUIRED, reason="_fastparse not built"
            ),
        ),
    ],
)
