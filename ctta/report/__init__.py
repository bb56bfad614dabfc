"""Reports: the protocol tables (tune scores, chosen configurations, protocol gaps),
leaderboards and figures, all pure functions of a results store."""
