"""Text from the knowledge graph: search queries, training captions, optional LLM attributes."""
