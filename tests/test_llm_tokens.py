"""Token estimates and prices."""

from __future__ import annotations

import pytest
from synth_helpers import make_request

from hybridscore.llm.tokens import PriceTable, estimate_prompt_tokens


def test_price_table_costs_and_worst_case() -> None:
    price = PriceTable(2.5, 10.0, discount=0.5)
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(6.25)
    request = make_request()
    expected = price.cost(estimate_prompt_tokens(request), request.max_tokens * request.n)
    assert price.worst_case(request) == pytest.approx(expected) and expected > 0
