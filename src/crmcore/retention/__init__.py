"""retention — arrives with its own issue."""
