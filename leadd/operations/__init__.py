"""Operations (issue 9): the use cases behind the ops API and the `leadd leads|report` CLI.

One use case per function, each taking `OpsDeps` (config, store, clock, wake-up) and typed
values; they raise `OpsError` subclasses that each adapter maps (HTTP status, exit code).
"""

from leadd.operations.deps import OpsDeps
from leadd.operations.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    OpsError,
    Unprocessable,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "OpsDeps",
    "OpsError",
    "Unprocessable",
]
