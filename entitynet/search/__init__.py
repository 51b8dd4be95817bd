"""Image-search backends behind one interface (`search(query) -> candidates`): searxng,
google-cse, brave (web APIs), commons (the entities' P18 images) and pool (a local url+text file)."""

BACKENDS = ("searxng", "google-cse", "brave", "commons", "pool")
