"""The console's screens; each is a view of store queries, reloaded when the store changes."""

# The top-level screens (Textual modes), in the order of their number keys.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("runs", "Runs"),
    ("data", "Data"),
    ("models", "Models"),
    ("drift", "Drift"),
    ("pipeline", "Pipeline"),
    ("jobs", "Jobs"),
    ("audit", "Audit"),
)
