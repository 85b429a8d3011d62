"""notify — arrives with its own issue."""
