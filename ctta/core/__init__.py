"""The bottom layer: the one user-error type, typed options (`hp`, YAML, `key=value`), the
registries of named methods, scenarios, protocols, backbones and datasets, seeding, content
keys, atomic files and caches, and importing the user's own `module.path:callable` code.
Imports nothing else from ctta."""
