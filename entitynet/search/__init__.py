"""Image sources behind one interface (`search(query) -> candidates`): web search APIs (searxng,
google-cse, brave), the entities' identifiers (commons, commons-category, gbif, inaturalist), and
the sources a harvest reads whole rather than query by query (pool, gbif-archive,
inaturalist-open-data). Each backend module declares itself to `entitynet.search.registry`; the
registry is the one list of backends (`registry.names()`)."""
