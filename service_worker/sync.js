// Background Sync: filled in by the sync issue.
