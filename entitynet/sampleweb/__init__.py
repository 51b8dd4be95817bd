"""The "sample web": a generated, deterministic corpus of images and alt texts for the sample
entities, served on loopback by an image host and a SearXNG-compatible search endpoint, so the
demo and the tests run the real search and fetch paths with no network."""
