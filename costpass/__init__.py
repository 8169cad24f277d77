"""costpass: a GPU pipeline-demand performance model inside Apache TVM."""
__version__ = "0.1.0"
