"""The Textual console: a view of the store, acting through the same functions as the CLI."""
