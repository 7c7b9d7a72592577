"""An example of your own experiment in gdeeper's runner (see ../README.md)."""
