"""Token estimates and cost accounting (kept apart from prompts and transport)."""

from __future__ import annotations

from dataclasses import dataclass

from hybridscore.llm.types import Request, Usage

CHARS_PER_TOKEN = 4.0  # the usual English estimate; real usage comes from the server
MESSAGE_OVERHEAD = 4  # role and separators per chat message


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def estimate_prompt_tokens(request: Request) -> int:
    schema = 0 if request.schema is None else estimate_tokens(str(request.schema))
    return schema + sum(estimate_tokens(text) + MESSAGE_OVERHEAD for _, text in request.messages)


@dataclass(frozen=True)
class PriceTable:
    """USD per million tokens; ``discount`` multiplies both (0.5 for the Batch API)."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    discount: float = 1.0

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            self.discount
            * (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million)
            / 1e6
        )

    def usage_cost(self, usage: Usage) -> float:
        return self.cost(usage.prompt_tokens, usage.completion_tokens)

    def worst_case(self, request: Request) -> float:
        """Cost if the request used its whole completion budget (what the budget reserves)."""
        return self.cost(estimate_prompt_tokens(request), request.max_tokens * request.n)
