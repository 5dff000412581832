"""Networks and their shape arithmetic."""
