"""Paper-style tables and figures; reports/paper/ will hold the papers' reference numbers."""
