"""Both implementations of parse_text_chunk, for tests that hold each to parse_chunk."""

import pytest

from logpipe.process.parse import (
    FAST_PATH_COMPILED,
    parse_text_chunk_c,
    parse_text_chunk_regex,
)

FAST_PATHS = pytest.mark.parametrize(
    "fast_path",
    [
        pytest.param(parse_text_chunk_regex, id="regex"),
        # test_the_c_fast_path_is_in_use_when_built fails when this skip should not happen
        pytest.param(
            parse_text_chunk_c,
            id="c",
            marks=pytest.mark.skipif(not FAST_PATH_COMPILED, reason="_fastparse not built"),
        ),
    ],
)
