"""Built-in protocols of ctta (import name ctta.protocols)."""
