"""Tasks the pipeline can run without downloads: the embedded synthetic task."""
