"""Built-in methods of ctta (import name ctta.methods)."""
