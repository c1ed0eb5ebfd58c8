"""schemathesis hooks for scripts/api-fuzz: tus bodies (application/offset+octet-stream) are raw
bytes, which schemathesis does not generate by itself."""

from hypothesis import strategies as st

import schemathesis

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
