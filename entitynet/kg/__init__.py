"""Knowledge-graph access and expansion: SPARQL clients (remote, embedded), query builders, and the
plain functions that turn query results into `Entity` records."""
