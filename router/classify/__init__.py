"""Text in, classification out: text preparation, keywords and rules, entities, the model, redaction of secrets. Pure logic, no I/O
(but for native.py, which reads the compiled build's manifest once, at import)."""

from router.classify.native import activate

# The hot modules compiled (scripts/build_native.py) when a build matches these sources.
NATIVE = activate(__path__)
