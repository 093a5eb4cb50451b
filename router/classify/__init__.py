"""Text in, classification out: text preparation, keywords and rules, entities, the model, redaction of secrets. Pure logic, no I/O."""
