"""A Keras training project built on the recipe: inspect the data, check the setup, train, tune."""
