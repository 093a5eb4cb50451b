"""The long-running services: the gateway (intake, agents' API, console), the classifier, the dispatcher with assignment and the SLA monitor, and the sender."""
