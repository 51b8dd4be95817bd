"""Image sources behind one interface (`search(query) -> candidates`): searxng, google-cse, brave
(web search APIs), commons (the entities' P18 images), commons-category (the files of the
entities' Commons categories), gbif and inaturalist (photos by taxon id), and the sources a
harvest reads whole rather than query by query: pool (a url+text file), gbif-archive (a GBIF
Darwin Core Archive download) and inaturalist-open-data (iNaturalist's metadata files)."""

BACKENDS = (
    "searxng",
    "google-cse",
    "brave",
    "commons",
    "commons-category",
    "gbif",
    "inaturalist",
    "pool",
    "gbif-archive",
    "inaturalist-open-data",
)
SOURCE_BACKENDS = ("pool", "gbif-archive", "inaturalist-open-data")  # read whole, not per query
# backends that find images by the entities' identifiers (or, for commons, their P18 image)
NEEDS_ENTITIES = (
    "commons",
    "commons-category",
    "gbif",
    "inaturalist",
    "gbif-archive",
    "inaturalist-open-data",
)
