"""newsletter: a campaign manager for a regional Internet bureau."""

__version__ = "0.1.0"
