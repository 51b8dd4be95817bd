"""Apache Beam pipelines that compose the `entitynet` library (DirectRunner locally, Dataflow at scale)."""
