"""Tools beside the library: the runnable demo and loaders for the public routing logs."""
