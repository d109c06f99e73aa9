// Web Push: filled in by the push issue.
