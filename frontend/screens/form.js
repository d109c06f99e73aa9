// Screen module: filled in by its issue.
