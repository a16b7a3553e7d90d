"""The fronts: thin translations from a wire protocol onto the one runtime, each with its own error table."""
