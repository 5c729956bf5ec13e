"""The synthesis rules: request planning, prompts, reply validation, filters and selection.

The ``synthesize`` stage runs them through the client layer in ``hybridscore.llm``.
"""
