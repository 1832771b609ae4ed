"""The West Midlands Regional Update: draft -> model -> render -> message -> transport -> ledger."""
