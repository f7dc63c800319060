"""dagentic's built-in tool plugins. Each registers through the ``dagentic.plugins``
entry-point group, exactly as a third-party package does."""
