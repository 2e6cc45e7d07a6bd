"""Where questions come from: the embedded synthetic task (``synthetic``) and one converter
per real math dataset (``math_datasets``)."""
