"""Console scripts (``psessions``), in the style of Pyramid's ``pshell``/``proutes``."""
