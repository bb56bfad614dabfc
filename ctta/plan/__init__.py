"""Planning: a run's identity (`RunSpec`), search spaces, metrics and their direction, how a
configuration is scored and chosen, and the `Protocol` base that turns finished records into
the runs a study needs. Pure functions of specs and records: nothing here runs a model."""
