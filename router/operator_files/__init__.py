"""The files operators edit under config/: schemas, the loader with file:line errors, and the filter language of routing.yaml."""
