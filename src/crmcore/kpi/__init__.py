"""kpi — arrives with its own issue."""
