"""Curation: MetaCLIP balancing over knowledge-graph entities (`balance`, `metadata`), near-duplicate
search over perceptual hashes (`neardup`), evaluation-set decontamination (`evalsets`),
entity-based subsets (`subsets`), the entities left without an image (`unimaged`) and the data card
(`card`). `beam_pipelines/curate.py` runs them over harvest shards."""
