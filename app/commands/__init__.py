"""The ``cloud-job-metrics`` console script: one module per subcommand."""
