"""routing — arrives with its own issue."""
