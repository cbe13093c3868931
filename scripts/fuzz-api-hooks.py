"""Schemathesis hooks for scripts/fuzz-api.

Schemathesis's coverage phase narrows header values to letters and digits,
which no entity tag can be; for If-Match it then sends a bare `0` as a
"valid" value. Such a case breaks the schema it was generated from, so it is
dropped rather than reported as a valid request refused. Invalid-mode cases
are kept: they must be refused.
"""

import re

import schemathesis

# The `If-Match` pattern of the served document (api/contract.rs::IF_MATCH).
IF_MATCH = re.compile(r'(\*|(W/)?"[!#-+\--~]*"( *, *(W/)?"[!#-+\--~]*")*)')


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    value = (case.headers or {}).get("If-Match")
    return value is None or IF_MATCH.fullmatch(value) is not None
