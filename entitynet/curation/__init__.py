"""Curation: MetaCLIP balancing over knowledge-graph entities (`balance`, `metadata`), near-duplicate
search over perceptual hashes (`neardup`), evaluation-set decontamination (`evalsets`) and
entity-based subsets (`subsets`). `beam_pipelines/curate.py` runs them over harvest shards."""
