"""Generator backends (``local``, ``openai``, ``openai-batch``) behind one small interface."""
