"""The ``caffe-compat`` command line: one module per subcommand (``cmd_*.py``)."""
