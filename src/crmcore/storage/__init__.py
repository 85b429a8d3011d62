"""storage — arrives with its own issue."""
