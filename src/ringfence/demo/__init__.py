"""``ringfence demo``: a scripted agent (no LLM) doing real work under an example policy."""
