"""The dataset explorer: a static site (HTML, CSS, a little JavaScript, JPEG thumbnails) to look at
a harvest or a curated dataset entity by entity, and at a run's evaluations class by class.

    site.py    the site's layout, its data files (JavaScript that hands JSON to the page, so the
               site opens from disk) and its pages
    rows.py    what the site shows of one record, one entity, one candidate (plain functions the
               Beam pipeline `beam_pipelines/explore.py` maps over the data)
    evals.py   an evaluation's pages: per class the held-out images and their top-5, confused pairs
    serve.py   `--serve`: the site over HTTP on 127.0.0.1
"""
