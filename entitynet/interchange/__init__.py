"""The field's data formats, both ways (`entitynet data export`, `entitynet data import`).

- `export`: which text a sample carries, how records are spread over shards of a target size, what
  one shard's files are (`ExportOptions`, `choose_text`, `plan_shards`).
- `webdataset`: img2dataset's layout (numbered `.tar` shards of `KEY.jpg`/`KEY.txt`/`KEY.json`, a
  Parquet sidecar and `_stats.json` per shard, `sizes.json`) written and read.
- `parquet`: Parquet with the image bytes (`image: {bytes, path}`) and a dataset card that Hugging
  Face `datasets` reads.
- `foreign`: samples of other people's shards (img2dataset, DataComp, LAION, a Parquet with image
  bytes) made candidates for the knowledge graph's entities.

The sample's fields are `entitynet.records.export_sample` (the schema lives there).
"""
