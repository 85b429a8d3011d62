"""scoring — arrives with its own issue."""
