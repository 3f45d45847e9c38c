"""Where a batch's metrics go: DogStatsD (:class:`MetricSubmitter`) behind one small interface."""
