"""Rules: the operator files loaded and the classifier built from them, as one object the services share, and the watcher that reloads them when a file changes."""
