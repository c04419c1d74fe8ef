"""The engine of spdesk: no Qt, no GUI, no CLI. Everything here is plain Python with events."""
