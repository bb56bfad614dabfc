"""Built-in scenarios of ctta (import name ctta.scenarios)."""
