"""Schema fuzzing of a live `dear serve` (schemathesis over /openapi.json, bounded): valid and invalid requests
alike get no 5xx, and every error is a JSON body with a message and no trace."""

from __future__ import annotations

import json

import pytest
from _serve_helpers import LiveServer

from inference.reranker import ListwiseReranker

schemathesis = pytest.importorskip("schemathesis")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fuzzed_requests_never_get_a_5xx_and_errors_are_json(tiny_model_dir):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", max_new_tokens=2)
    with LiveServer(rr, max_documents=6, max_document_chars=300, max_query_chars=300, max_body_bytes=20_000) as s:
        schema = schemathesis.openapi.from_url(s.url + "/openapi.json")
        strategy = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
        seen: dict[int, int] = {}

        @settings(max_examples=40, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case):
            resp = case.call(base_url=s.url, timeout=60)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            assert resp.status_code < 500, (case.method, case.path, resp.status_code, resp.text[:300])
            if resp.status_code >= 400:
                body = json.loads(resp.text)
                assert isinstance(body["message"], str) and body["message"], resp.text[:300]
                assert "Traceback" not in resp.text

        check()
    assert 200 in seen and 422 in seen, seen  # both valid and refused requests were exercised
