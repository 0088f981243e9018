"""Pure functions of one profile: avatar hashes, bio embeddings, name and handle keys."""
