"""One module per operators' file, each the typed model that checks it: `classifier`
(classifier.yaml), `routing` (routing.yaml), `templates` (templates/replies.yaml), `agents`
(agents.yaml); `common` holds what they share. Loading them is `router.operator_files.config`."""
